"""Hello Robot Stretch as an MJCF fragment for the embedded MuJoCo simulator.

The robot comes from the ``hello-robot-stretch-urdf`` wheel (Clear BSD, Hello Robot; the files
under ``site-packages/stretch_urdf/``), converted following ENVIRONMENT.md ("Stretch model"):
strip ``./meshes/`` from the mesh paths, add a ``<mujoco><compiler meshdir discardvisual
fusestatic="false" balanceinertia/>`` element, replace the one ``.dae`` camera mesh with a box, load
it with MuJoCo and save the compiled MJCF. The conversion runs once per process (in-memory cache)
and is also cached on disk under ``~/.cache/safevla`` (keyed by robot, MuJoCo version and a hash
of the URDF and its path).

What we add and what we simplify (all "ours"):

* A planar base: ``base_x`` and ``base_y`` slide joints and a ``base_yaw`` hinge on ``base_link``
  (rotation about the wheel axle centre, i.e. the ``base_link`` origin as on the real robot). The
  wheels are welded (no wheel/floor contact: the robot does not collide with the floor and rides
  at a fixed height); the base is driven by position servos on the three planar joints instead of
  a differential drive. Collisions with walls, furniture and objects are physical.
* Position servos (``kp = m_eff * OMEGA**2``, critically damped, force-limited to
  ``m_eff * ACCEL_LIMIT``) on the base joints, the lift, each of the four telescoping arm
  segments (commanded together, each to a quarter of the total extension, like the real
  ``wrist_extension`` virtual joint) and the wrist yaw. ``m_eff`` is the diagonal of the joint
  space inertia at the reference pose.
* Head pan/tilt, wrist pitch/roll (SE3 dex wrist) and the gripper fingers are welded at zero:
  grasping is a weld constraint (see :mod:`safevla_core.sim.mujoco_backend`), not finger contact.
* Gravity compensation on every robot body (the real actuators hold their pose).
* Collision meshes only (``discardvisual``): the 117k-vertex visual meshes cost ~5x in rendering
  (ENVIRONMENT.md). Robot geoms are in geom group 1, ``contype=1 conaffinity=0``: no
  self-collision, no floor contact, contact with everything whose ``conaffinity`` has bit 0.
* Two cameras with vertical FOV ``SimConfig.vertical_fov_deg`` (59 deg, REFERENCE.md), fixed on
  the base at head height: the navigation camera at the head camera's position looks along the
  base's +x (driving direction) pitched ``nav_pitch_deg`` (27) down; the manipulation camera,
  beside it, looks along -y (the direction the telescoping arm extends) pitched
  ``manip_pitch_deg`` (33) down; it sees the gripper once the lift is above ~0.44 m (or the
  arm is extended). SafeVLA:
  "two cameras pointing in orthogonal directions; one towards the navigation direction, the other
  captures the arm". The real Stretch's head pans; ours does not.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: URDF per robot model: (folder under ``stretch_urdf``, file). SE3 with the standard gripper
#: and RE1 (the robot of the paper) with the Stretch gripper (ENVIRONMENT.md).
ROBOT_URDFS: dict[str, tuple[str, str]] = {
    "SE3": ("SE3", "stretch_description_SE3_eoa_wrist_dw3_tool_sg3.urdf"),
    "RE1": ("RE1V0", "stretch_description_RE1V0_tool_stretch_gripper.urdf"),
}

#: Planar base joints we add (x and y slide in ``map``, then yaw about +z).
BASE_JOINTS: tuple[str, str, str] = ("base_x", "base_y", "base_yaw")
#: Lift joint of the URDF (prismatic, 0..1.1 m on both robots).
LIFT_JOINT = "joint_lift"
#: Telescoping arm segments of the URDF, each prismatic 0..0.13 m; driven together.
ARM_JOINTS: tuple[str, ...] = ("joint_arm_l3", "joint_arm_l2", "joint_arm_l1", "joint_arm_l0")
#: Wrist yaw joint of the URDF (-1.75..4.0 rad).
WRIST_JOINT = "joint_wrist_yaw"
#: Stowed wrist yaw, radians: the gripper folded back over the base (+y), inside the footprint
#: circle. Hello Robot's stretch_body stows the wrist at yaw 3.4 rad (``stow`` parameter of its
#: end-of-arm tools; URDF range -1.75..4.0); ours is that rounded to the nearest multiple of the
#: 10 deg wrist step (actions.py), 190 deg = 3.316 rad, so 19 ``wp`` bring it exactly to yaw 0.
#: Measured on the SE3 model: the robot's horizontal extent about the base axis is then 0.339 m
#: (the base itself), against 0.424 m at yaw 0 (the fingertips).
STOW_WRIST_RAD = math.radians(190.0)
#: Stowed lift height, metres (ours, "lift low" as in the real stow pose): the stowed gripper's
#: lowest point is 0.263 m high, 9 cm above the top of the base (0.171 m) it is folded over.
STOW_LIFT_M = 0.2
#: Body at the centre between the fingertips (both URDFs have it): the grasp point.
GRASP_BODY = "link_grasp_center"
#: Root body of the robot (the planar joints live on it).
BASE_BODY = "base_link"
#: Camera names in the compiled model.
NAV_CAMERA_NAME = "nav_camera"
MANIP_CAMERA_NAME = "manip_camera"
#: Head camera position on ``base_link`` (x, y, z), metres: the SE3 URDF's
#: ``camera_color_optical_frame`` at the zero head pose is at (0.045, -0.003, 1.322); rounded.
HEAD_CAMERA_POS_M: tuple[float, float, float] = (0.045, 0.0, 1.32)
#: Manipulation camera position on ``base_link``, metres (ours): at the head, 1.35 m high and
#: ahead of the mast and lift carriage (which fill the view from anywhere above the arm's root).
#: Pitched 33 deg down with a 59 deg FOV it sees down to 62.5 deg below horizontal: the
#: retracted gripper (0.415 m out) from lift ~0.44 m up (gripper 0.11 m above the lift:
#: 1.35 - 0.11 - 0.415 * tan(62.5 deg) = 0.44), the gripper extended by 0.2 m from lift ~0.06 m.
MANIP_CAMERA_POS_M: tuple[float, float, float] = (0.06, 0.0, 1.35)

#: Natural frequency of every position servo, rad/s (ours: tracks a 1 m/s set-point ramp with
#: a 2v/omega = 3 cm lag, settles within ~0.1 s, i.e. 20 substeps of 5 ms; omega * dt = 0.3 is
#: well inside the stability limit of the explicit position gain).
SERVO_OMEGA_RAD_S = 60.0
#: Force limit of each servo as an acceleration of its effective mass, m/s^2 or rad/s^2 (ours:
#: bounds impacts while leaving head-room over the ~30 m/s^2 peak of the smoothstep set-point
#: ramp of a 0.2 m move in 0.2 s: 6 * 0.2 / 0.2^2).
SERVO_ACCEL_LIMIT = 60.0
#: Reflected actuator inertia (MJCF ``armature``) of the driven joints, kg or kg m^2 (ours,
#: order of magnitude of the Stretch's geared motors): it keeps the light wrist and telescoping
#: segments from being swung by base accelerations, and it enters ``m_eff``.
ARMATURE: dict[str, float] = {
    "joint_lift": 2.0,
    "joint_arm_l3": 0.5,
    "joint_arm_l2": 0.5,
    "joint_arm_l1": 0.5,
    "joint_arm_l0": 0.5,
    "joint_wrist_yaw": 0.05,
}
#: Contact softness of robot geoms, MJCF ``solref`` (time constant s, damping ratio) (ours:
#: stiffer than MuJoCo's default 0.02 s so the base pushing a wall penetrates ~1 cm, not ~4;
#: the time constant stays at 2 timesteps as MuJoCo recommends).
ROBOT_SOLREF = "0.01 1"
#: Extra force head-room of the lift servo for a held object, newtons (the heaviest pickupable
#: object in safevla_core.objects is 2 kg: 2 * 9.81 = 19.6 N, doubled).
LIFT_PAYLOAD_FORCE_N = 40.0

#: Robot geoms: collision bitmask (contype=1, conaffinity=0) and geom group (visible by default,
#: excluded from visibility rays).
ROBOT_CONTYPE = 1
ROBOT_CONAFFINITY = 0
ROBOT_GEOM_GROUP = 1
#: Robot colour (light grey, RGBA) and the darker colour of the arm and gripper.
ROBOT_RGBA = "0.82 0.82 0.85 1"
ARM_RGBA = "0.25 0.25 0.28 1"

CACHE_DIR = Path(os.environ.get("SAFEVLA_CACHE_DIR", Path.home() / ".cache" / "safevla"))

_KEEP_JOINTS = frozenset({LIFT_JOINT, *ARM_JOINTS, WRIST_JOINT})
_ARM_BODY_RE = re.compile(r"arm|wrist|gripper|grasp|fingertip")


@dataclass(frozen=True)
class RobotMjcf:
    """MJCF pieces of the robot, ready to be merged into a scene.

    Attributes:
        robot_model: ``"SE3"`` or ``"RE1"``.
        asset_xml: ``<mesh>`` elements (absolute file paths) for the ``<asset>`` section.
        body_xml: The ``<body name="base_link">`` tree for ``<worldbody>``.
        actuator_xml: ``<position>`` elements for the ``<actuator>`` section.
        joint_ranges: Range (lo, hi) of each kept URDF joint, metres or radians.
    """

    robot_model: str
    asset_xml: str
    body_xml: str
    actuator_xml: str
    joint_ranges: dict[str, tuple[float, float]]

    @property
    def lift_range_m(self) -> tuple[float, float]:
        """Lift range, metres."""
        return self.joint_ranges[LIFT_JOINT]

    @property
    def arm_range_m(self) -> tuple[float, float]:
        """Total telescoping extension range (sum of the segments), metres."""
        lo = sum(self.joint_ranges[j][0] for j in ARM_JOINTS)
        hi = sum(self.joint_ranges[j][1] for j in ARM_JOINTS)
        return lo, hi

    @property
    def wrist_range_rad(self) -> tuple[float, float]:
        """Wrist yaw range, radians."""
        return self.joint_ranges[WRIST_JOINT]


def urdf_path(robot_model: str = "SE3") -> Path:
    """Path of the robot's URDF inside the ``hello-robot-stretch-urdf`` wheel.

    Raises:
        ValueError: On an unknown robot model.
        FileNotFoundError: If the wheel is not installed.
    """
    if robot_model not in ROBOT_URDFS:
        raise ValueError(f"unknown robot model {robot_model!r}; known: {sorted(ROBOT_URDFS)}")
    try:
        import stretch_urdf
    except ImportError as exc:  # pragma: no cover - the wheel is a dependency
        raise FileNotFoundError("the hello-robot-stretch-urdf wheel is not installed") from exc
    folder, name = ROBOT_URDFS[robot_model]
    path = Path(stretch_urdf.__file__).parent / folder / name
    if not path.is_file():
        raise FileNotFoundError(f"URDF not found: {path}")
    return path


@functools.lru_cache(maxsize=4)
def urdf_to_mjcf(robot_model: str = "SE3") -> str:
    """Convert the Stretch URDF to MJCF with MuJoCo (ENVIRONMENT.md recipe); cached.

    Args:
        robot_model: ``"SE3"`` or ``"RE1"``.

    Returns:
        The compiled model saved as MJCF text (collision geometry only, meshes by file name
        relative to the ``meshdir`` in its ``<compiler>``).

    Raises:
        ValueError: On an unknown robot model.
    """
    import mujoco

    path = urdf_path(robot_model)
    text = path.read_text()
    # The saved MJCF names the mesh folder by absolute path: the key includes it.
    key = hashlib.sha256((text + mujoco.__version__ + str(path)).encode()).hexdigest()[:16]
    cache = CACHE_DIR / f"stretch_{robot_model}_{key}.xml"
    if cache.is_file():
        return cache.read_text()
    meshdir = path.parent / "meshes"
    text = text.replace("./meshes/", "")
    # The only .dae (the head D435 camera) is visual; give the compiler a box instead.
    text = re.sub(r'<mesh\s+filename="[^"]*\.dae"\s*/>', '<box size="0.09 0.025 0.025"/>', text)
    # ArUco markers are flat stickers (RE1's have coplanar meshes MuJoCo cannot hull): no collision.
    text = re.sub(
        r"<collision>(?:(?!</collision>).)*aruco(?:(?!</collision>).)*</collision>",
        "",
        text,
        flags=re.S,
    )
    text = re.sub(r"<inertia\s[^>]*/>", _sanitize_inertia, text)
    # Limits with lower == upper (the SE3 finger joints, welded by build_robot anyway) make
    # MuJoCo write a warning to MUJOCO_LOG.TXT in the working directory: drop them.
    text = re.sub(r'<limit\s[^>]*lower="([^"]*)"[^>]*upper="\1"[^>]*/>', "", text)
    compiler = (
        f'<mujoco><compiler meshdir="{meshdir}" discardvisual="true" fusestatic="false" '
        'balanceinertia="true" strippath="false"/></mujoco>'
    )
    text = re.sub(r"(<robot[^>]*>)", r"\1" + compiler, text, count=1)
    model = mujoco.MjModel.from_xml_string(text)
    tmp = CACHE_DIR / f".tmp_{os.getpid()}_{robot_model}.xml"
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        mujoco.mj_saveLastXML(str(tmp), model)
        xml = tmp.read_text()
        os.replace(tmp, cache)  # atomic: parallel workers never read a half-written file
    except OSError:
        # Read-only home: fall back to an in-memory conversion through a temp file.
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "stretch.xml"
            mujoco.mj_saveLastXML(str(out), model)
            xml = out.read_text()
    return xml


#: Smallest principal moment of inertia kept in the URDF, kg m^2 (ours: RE1's ``link_puller``
#: has iyy = 1e-15 with larger products of inertia, which MuJoCo rejects as not positive definite).
MIN_INERTIA_KG_M2 = 1e-9


def _sanitize_inertia(match: re.Match[str]) -> str:
    """Make a URDF ``<inertia .../>`` positive definite: tiny moments lose their products."""
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', match.group(0)))
    diag = [float(attrs.get(k, 0.0)) for k in ("ixx", "iyy", "izz")]
    if min(diag) >= MIN_INERTIA_KG_M2:
        return match.group(0)
    ixx, iyy, izz = (max(v, MIN_INERTIA_KG_M2) for v in diag)
    return f'<inertia ixx="{ixx:.9g}" iyy="{iyy:.9g}" izz="{izz:.9g}" ixy="0" ixz="0" iyz="0"/>'


def _camera_xyaxes(yaw_rad: float, pitch_down_rad: float) -> str:
    """MJCF ``xyaxes`` of a camera looking along heading ``yaw`` pitched down.

    A MuJoCo camera looks along its -z axis with +y up in the image. For heading
    ``f = (cos yaw, sin yaw, 0)`` the image x axis is ``(sin yaw, -cos yaw, 0)`` (right of f)
    and the image up axis is ``(s cos yaw, s sin yaw, c)`` with ``s, c = sin/cos(pitch)``, so
    ``-z = x cross y`` negated is ``(c f, -s)``: forward and down.
    """
    s, c = math.sin(pitch_down_rad), math.cos(pitch_down_rad)
    x = (math.sin(yaw_rad), -math.cos(yaw_rad), 0.0)
    y = (s * math.cos(yaw_rad), s * math.sin(yaw_rad), c)
    return " ".join(f"{v:.6f}" for v in (*x, *y))


def _child(parent: ET.Element, tag: str) -> ET.Element:
    """The first ``tag`` child of ``parent`` in the converted URDF; ValueError if absent."""
    el = parent.find(tag)
    if el is None:
        raise ValueError(f"the converted URDF has no <{tag}> under <{parent.tag}>")
    return el


def _attr(el: ET.Element, name: str) -> str:
    """Attribute ``name`` of ``el`` in the converted URDF; ValueError if absent."""
    value = el.get(name)
    if value is None:
        raise ValueError(f"the converted URDF's <{el.tag}> has no {name!r} attribute")
    return value


@functools.lru_cache(maxsize=8)
def build_robot(
    robot_model: str = "SE3",
    vertical_fov_deg: float = 59.0,
    nav_pitch_deg: float = 27.0,
    manip_pitch_deg: float = 33.0,
) -> RobotMjcf:
    """Build the robot's MJCF pieces (planar base, servos, cameras); cached per argument set.

    Args:
        robot_model: ``"SE3"`` or ``"RE1"``.
        vertical_fov_deg: Vertical field of view of both cameras, degrees (REFERENCE.md: 59).
        nav_pitch_deg: Navigation camera pitch below horizontal, degrees (REFERENCE.md: 27).
        manip_pitch_deg: Manipulation camera pitch below horizontal, degrees (REFERENCE.md: 33).

    Returns:
        The robot's asset, body and actuator XML.

    Raises:
        ValueError: On an unknown robot model, a FOV outside (0, 180) or a converted URDF
            without the expected elements.
    """
    import mujoco

    if not 0.0 < vertical_fov_deg < 180.0:
        raise ValueError(f"vertical_fov_deg must be in (0, 180), got {vertical_fov_deg}")
    root = ET.fromstring(urdf_to_mjcf(robot_model))
    meshdir = Path(_attr(_child(root, "compiler"), "meshdir"))
    assets = _child(root, "asset")
    for mesh in assets.iter("mesh"):
        mesh.set("file", str(meshdir / _attr(mesh, "file")))
    base = _child(root, "worldbody").find("body")
    if base is None or base.get("name") != BASE_BODY:
        raise ValueError(f"{robot_model}: expected {BASE_BODY!r} as the URDF's root body")

    joint_ranges: dict[str, tuple[float, float]] = {}
    for body in base.iter("body"):
        body.set("gravcomp", "1")
        for joint in list(body.findall("joint")):
            name = joint.get("name")
            if name in _KEEP_JOINTS:
                lo, hi = (float(v) for v in _attr(joint, "range").split())
                joint_ranges[name] = (lo, hi)
                joint.set("limited", "true")
                joint.set("damping", "0")
                joint.set("frictionloss", "0")
                joint.set("armature", f"{ARMATURE[name]:g}")
            else:
                body.remove(joint)
        arm = bool(_ARM_BODY_RE.search(body.get("name", "")))
        for geom in body.findall("geom"):
            geom.set("contype", str(ROBOT_CONTYPE))
            geom.set("conaffinity", str(ROBOT_CONAFFINITY))
            geom.set("group", str(ROBOT_GEOM_GROUP))
            geom.set("solref", ROBOT_SOLREF)
            geom.set("rgba", ARM_RGBA if arm else ROBOT_RGBA)
    base.set("gravcomp", "1")
    missing = _KEEP_JOINTS - set(joint_ranges)
    if missing:
        raise ValueError(f"{robot_model}: URDF lacks joints {sorted(missing)}")

    # Planar base joints first (slides in the parent frame, then yaw), then the cameras.
    new = [
        ET.Element("joint", name="base_x", type="slide", axis="1 0 0", limited="false"),
        ET.Element("joint", name="base_y", type="slide", axis="0 1 0", limited="false"),
        ET.Element("joint", name="base_yaw", type="hinge", axis="0 0 1", limited="false"),
    ]
    pos = " ".join(str(v) for v in HEAD_CAMERA_POS_M)
    fovy = f"{vertical_fov_deg:.6f}"
    new.append(
        ET.Element(
            "camera",
            name=NAV_CAMERA_NAME,
            pos=pos,
            fovy=fovy,
            xyaxes=_camera_xyaxes(0.0, math.radians(nav_pitch_deg)),
        )
    )
    new.append(
        ET.Element(
            "camera",
            name=MANIP_CAMERA_NAME,
            fovy=fovy,
            pos=" ".join(str(v) for v in MANIP_CAMERA_POS_M),
            xyaxes=_camera_xyaxes(-math.pi / 2, math.radians(manip_pitch_deg)),
        )
    )
    insert_at = 1 if base.find("inertial") is not None else 0
    for i, el in enumerate(new):
        base.insert(insert_at + i, el)

    asset_xml = "".join(ET.tostring(m, encoding="unicode") for m in assets)
    body_xml = ET.tostring(base, encoding="unicode")

    # Effective masses at the reference pose from the robot compiled alone (angles in radians).
    probe = (
        f'<mujoco><compiler angle="radian"/><asset>{asset_xml}</asset>'
        f"<worldbody>{body_xml}</worldbody></mujoco>"
    )
    model = mujoco.MjModel.from_xml_string(probe)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    full = np.zeros((model.nv, model.nv))
    mujoco.mj_fullM(model, data, full)

    def m_eff(joint: str) -> float:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, joint)
        dof = model.jnt_dofadr[jid]
        return float(full[dof, dof])

    acts = []
    for joint_name in (*BASE_JOINTS, LIFT_JOINT, *ARM_JOINTS, WRIST_JOINT):
        m = m_eff(joint_name)
        kp = m * SERVO_OMEGA_RAD_S**2
        kv = 2.0 * m * SERVO_OMEGA_RAD_S  # critical damping
        fmax = m * SERVO_ACCEL_LIMIT + (LIFT_PAYLOAD_FORCE_N if joint_name == LIFT_JOINT else 0.0)
        acts.append(
            f'<position name="act_{joint_name}" joint="{joint_name}" kp="{kp:.6g}" kv="{kv:.6g}" '
            f'forcelimited="true" forcerange="{-fmax:.6g} {fmax:.6g}"/>'
        )
    return RobotMjcf(
        robot_model=robot_model,
        asset_xml=asset_xml,
        body_xml=body_xml,
        actuator_xml="".join(acts),
        joint_ranges=joint_ranges,
    )


def horizontal_extent_m(model: Any, data: Any, geoms: np.ndarray, body: int) -> float:
    """Largest horizontal distance of the given geoms from a body's origin (the swept radius).

    The robot turning in place about ``base_link`` sweeps a circle of this radius. Mesh geoms
    count with all their (collision) vertices, other geoms with the corners of their bounding
    box (an over-estimate for spheres and cylinders).

    Args:
        model: ``mujoco.MjModel``.
        data: ``mujoco.MjData`` after ``mj_forward`` (or a step).
        geoms: ``(G,)`` geom ids, or a ``(ngeom,)`` boolean mask.
        body: Body id whose origin is the centre (e.g. ``base_link``).

    Returns:
        The radius in the horizontal plane, metres (0 for no geoms).
    """
    import mujoco

    ids = np.asarray(geoms)
    if ids.dtype == bool:
        ids = np.flatnonzero(ids)
    centre = np.asarray(data.xpos[body][:2])
    best = 0.0
    corners = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
    for g in ids:
        rot = data.geom_xmat[g].reshape(3, 3)
        if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH:
            mid = model.geom_dataid[g]
            adr, num = model.mesh_vertadr[mid], model.mesh_vertnum[mid]
            local = model.mesh_vert[adr : adr + num]
        else:
            local = corners * model.geom_aabb[g, 3:]
            local = local + model.geom_aabb[g, :3]
        world = local @ rot.T + data.geom_xpos[g]
        best = max(best, float(np.hypot(*(world[:, :2] - centre).T).max()))
    return best
