"""The embedded MuJoCo simulator backend (the default backend).

:class:`MujocoBackend` implements :class:`safevla_core.sim.backend.SimBackend`: it loads a house in
ProcTHOR's schema (:mod:`safevla_core.sim.scene`) with the Stretch robot
(:mod:`safevla_core.sim.stretch_model`), executes the 20 discrete actions with physics, renders the
two cameras offscreen on the CPU and reports a :class:`safevla_core.world.WorldState` after every
reset and step.

How each action runs (all constants below are ours unless a source is named):

* Motions (base, lift, arm, wrist) are physical: position servos follow a set-point ramp at a
  fixed mean speed (``BASE_SPEED_M_S``, ...; smoothstep profile), then hold the target for up to
  ``settle_substeps`` substeps (SimConfig; stopping early once nothing moves faster than
  ``SETTLE_SPEED`` and every servo is within ``SETTLE_SERVO_ERROR`` of its target for
  ``SETTLE_QUIET_SUBSTEPS`` substeps). Walls and
  furniture stop the base (the servo force is limited); small objects are pushed, knocked over and
  fall. Targets outside the joint range are clamped and the action reports
  ``last_action_success=False``; so does a motion that ends farther than a tolerance
  (``BASE_TOL_M``, ...) from its target (blocked). After a blocked motion the servo target is
  reset to the reached position, so the robot does not keep pushing. Before every motion the
  servo gains are re-scheduled on the current joint-space inertia (:meth:`MujocoBackend.
  _schedule_gains`), so an extended arm (twice the base's yaw inertia) turns as crisply as a
  retracted one.
* ``p`` grasps the nearest pickupable free object whose box (cylinder/sphere: its bounding box)
  is within ``GRASP_REACH_M`` of the grasp point between the fingertips: one inactive weld
  equality per pickupable object; on pickup the current relative pose is written into
  ``model.eq_data`` and ``data.eq_active`` is set (the object does not jump; it follows lift, arm
  and base; ENVIRONMENT.md). While held, the object does not collide with the robot. ``d``
  deactivates the weld: the object falls under physics. ``p`` with nothing in reach, ``p`` while
  holding and ``d`` with an empty gripper fail. ``end`` and ``sub_done`` move nothing (physics
  keeps settling).
* ``collided_ids``: every object or structure id that any robot geom touched in any substep of the
  action (boolean geom masks against ``data.contact``; the floor never collides with the robot,
  the held object is excluded: it is welded to the gripper, and its own contacts with the world
  are not robot contacts).
* ``visible_ids``: objects whose centre or top-centre point is inside the navigation camera's
  frustum and not occluded, by a ray (``mj_multiRay``) from the camera through the point whose
  first hit is the object itself. The robot's own geoms never occlude. ``last_seen_step`` uses the
  same test in both cameras.
* ``free_fraction_1m``: :func:`safevla_core.sim.free_space.free_fraction` of the robot position
  against the reachable grid (:func:`safevla_core.sim.free_space.reachable_grid` of the house's
  :func:`~safevla_core.houses.floor_plan.house_floor_plan`).

Reset: the arm starts retracted, with the gripper stowed over the base (``stow_gripper``) or in
the original pose pointing right; the start pose is one where no robot geom touches anything,
checked right after placing and again after the objects have settled (see :meth:`reset`).
Appearance: :meth:`MujocoBackend.set_appearance` sets a persistent out-of-distribution colour /
lighting / material perturbation (:mod:`safevla_core.sim.appearance`), re-applied after every
reset; it never changes the physics.

Resting objects sleep (MuJoCo island sleeping, :data:`safevla_core.sim.scene.SLEEP_TOLERANCE`)
until something touches them: ~3x faster physics in a 30-object house, same results otherwise.

Rendering (:mod:`safevla_core.sim.render`) follows ENVIRONMENT.md: ``MUJOCO_GL``
(``SimConfig.gl_backend`` when unset), ``offsamples=0``, shadows, reflections and skybox off. The
GL context is created at the first :meth:`render` (physics-only use needs no GL) and reused
across resets. The step rate is measured by :func:`safevla_core.bench.benchmark_steps`;
``python -m safevla_core.sim.snapshot`` saves both cameras of a house as PNG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from safevla_core.actions import ACTION_EFFECTS, Action, parse_action
from safevla_core.config import CostConfig, SimConfig
from safevla_core.houses.floor_plan import FloorPlan, footprint_free, house_floor_plan
from safevla_core.sim.appearance import (
    AppearanceDefaults,
    apply_appearance,
    capture_defaults,
    check_perturbation,
    restore_defaults,
)
from safevla_core.sim.backend import MANIP_CAMERA, NAV_CAMERA
from safevla_core.sim.free_space import ROBOT_RADIUS_M, free_fraction, reachable_grid
from safevla_core.sim.render import OffscreenRenderer
from safevla_core.sim.scene import (
    FREE_CONAFFINITY,
    OBJECT_GROUP,
    STRUCTURE_GROUP,
    HouseLayout,
    layout_scene_xml,
    object_body_name,
    parse_house,
    wall_geom_prefix,
    weld_name,
)
from safevla_core.sim.stretch_model import (
    ARM_JOINTS,
    BASE_JOINTS,
    GRASP_BODY,
    LIFT_JOINT,
    LIFT_PAYLOAD_FORCE_N,
    MANIP_CAMERA_NAME,
    NAV_CAMERA_NAME,
    ROBOT_CONTYPE,
    ROBOT_GEOM_GROUP,
    SERVO_ACCEL_LIMIT,
    SERVO_OMEGA_RAD_S,
    STOW_LIFT_M,
    STOW_WRIST_RAD,
    WRIST_JOINT,
    RobotMjcf,
    build_robot,
)
from safevla_core.world import WorldState

#: Base speed while following the set-point ramp, m/s (ours: 0.2 m in 40 substeps of 5 ms;
#: faster than the real Stretch's ~0.3 m/s to keep an action at a few ms of physics).
BASE_SPEED_M_S = 1.0
#: Base turning speed, rad/s (ours: 30 deg in 34 substeps).
BASE_YAW_SPEED_RAD_S = math.pi
#: Lift and arm speeds, m/s (ours).
LIFT_SPEED_M_S = 0.5
ARM_SPEED_M_S = 0.5
#: Wrist yaw speed, rad/s (ours).
WRIST_SPEED_RAD_S = math.pi
#: A translation ending farther than this from its target was blocked, metres (ours: 10% of
#: a 0.2 m move; free-space tracking error after settling is < 2 mm).
BASE_TOL_M = 0.02
#: Heading tolerance of base motions, radians (ours: 2 deg).
YAW_TOL_RAD = math.radians(2.0)
#: Lift / arm tolerance, metres (ours: half of the small 0.02 m step).
JOINT_TOL_M = 0.01
#: Wrist tolerance, radians (ours: 3 deg, a third of the 10 deg step).
WRIST_TOL_RAD = math.radians(3.0)
#: Grasp reach: the largest distance from the grasp point to an object's box, metres
#: (ours: ~ the Stretch gripper's finger length; AI2-THOR's Stretch grasps within a sphere).
GRASP_REACH_M = 0.15
#: Settling stops early once every joint speed is below this, m/s or rad/s (ours).
SETTLE_SPEED = 0.03
#: ... and every servo is within this of its target, metres or radians (ours: 2 mm / 0.11 deg,
#: well inside the success tolerances; a blocked servo keeps settling for all substeps).
SETTLE_SERVO_ERROR = 2e-3
#: ... for this many consecutive substeps (ours: an object released at rest is still slower
#: than SETTLE_SPEED one substep after the release: 0.022 m/s measured).
SETTLE_QUIET_SUBSTEPS = 5
#: Physics substeps after a reset so objects come to rest before step 0 (ours: 0.5 s).
RESET_SETTLE_SUBSTEPS = 100
#: Initial lift height, arm extension and wrist yaw after reset with ``stow_gripper=False`` (the
#: original pose, ours: arm low and retracted, gripper pointing along the arm's extension
#: direction, 0.42 m out to the right: beyond the footprint circle). With ``stow_gripper=True``
#: the start pose is the stow pose instead (``STOW_LIFT_M``, arm 0, ``STOW_WRIST_RAD``;
#: stretch_model).
INITIAL_LIFT_M = 0.3
INITIAL_ARM_M = 0.0
INITIAL_WRIST_RAD = 0.0
#: Near plane of the visibility frustum, metres (ours: ~ the renderer's near plane).
VISIBILITY_NEAR_M = 0.05
#: Seeded start poses tried before giving up on a collision-free one (ours).
MAX_START_TRIES = 64

_GEOMGROUP_VISIBLE = np.zeros(6, dtype=np.uint8)
_GEOMGROUP_VISIBLE[[STRUCTURE_GROUP, OBJECT_GROUP]] = 1


class MujocoBackend:
    """Embedded MuJoCo simulator of a Stretch in a ProcTHOR-style house.

    Args:
        sim_cfg: Simulator settings (image size, camera FOV/pitch, robot model, GL backend,
            settle substeps).
        cost_cfg: Cost settings (corner test: ``corner_samples``, ``corner_radius_m``).
        width: Render width override, pixels (training renders e.g. 160).
        height: Render height override, pixels (e.g. 96).
        stow_gripper: Start every episode in the stow pose (lift ``STOW_LIFT_M``, arm retracted,
            wrist yaw ``STOW_WRIST_RAD``: the gripper folded back over the base, so turning in
            place sweeps only the 0.34 m footprint circle, as on the real Stretch; 19 ``wp``
            unstow it to yaw 0). False (the default, for now: the PickUp/Fetch expert and the
            task's start-pose check assume wrist yaw 0 at reset): the original start pose (lift
            ``INITIAL_LIFT_M``, wrist yaw 0, gripper 0.42 m out to the right, beyond the
            footprint). Also settable as the attribute ``stow_gripper`` before a reset.

    Raises:
        ValueError: On a non-positive width/height override.
    """

    def __init__(
        self,
        sim_cfg: SimConfig = SimConfig(),  # noqa: B008 - frozen dataclass, immutable default
        cost_cfg: CostConfig = CostConfig(),  # noqa: B008
        width: int | None = None,
        height: int | None = None,
        stow_gripper: bool = False,
    ) -> None:
        """Build the robot's MJCF (cached); the house is loaded by :meth:`reset`."""
        for name, v in (("width", width), ("height", height)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.stow_gripper = bool(stow_gripper)
        self._appearance: tuple[str | None, int] = (None, 0)
        self._appearance_defaults: AppearanceDefaults | None = None
        self.sim_cfg = sim_cfg
        self.cost_cfg = cost_cfg
        self.width = int(width or sim_cfg.width)
        self.height = int(height or sim_cfg.height)
        self.robot: RobotMjcf = build_robot(
            sim_cfg.robot_model,
            sim_cfg.vertical_fov_deg,
            sim_cfg.nav_pitch_deg,
            sim_cfg.manip_pitch_deg,
        )
        self._renderer: OffscreenRenderer | None = None
        self._renderer_model: Any = None
        self.model: Any = None
        self.data: Any = None
        self._state: WorldState | None = None
        self._plan: FloorPlan | None = None
        self._reachable: np.ndarray = np.zeros((0, 2))

    # ------------------------------------------------------------------ reset
    def reset(
        self,
        house: Mapping[str, Any],
        robot_pose: tuple[float, float, float] | None = None,
        seed: int | None = None,
    ) -> WorldState:
        """Load a house and place the robot (see :meth:`SimBackend.reset`).

        The arm starts in the stow pose (or the original pose, see ``stow_gripper``). The robot
        pose is ``robot_pose`` if given (used as is, even if not on the reachable grid or in
        contact); else ``metadata.agent`` if present, its footprint is free and the robot
        touches nothing there; else the first of up to ``MAX_START_TRIES`` reachable grid
        points with headings drawn from ``seed`` where nothing of the robot touches anything,
        both right after placing it and after the objects have settled for
        ``RESET_SETTLE_SUBSTEPS`` (if none does, the first candidate). The appearance
        perturbation (:meth:`set_appearance`) is applied to the new model.

        Raises:
            ValueError: On a malformed house or pose, or a house without reachable positions.
        """
        import mujoco

        pose = None
        if robot_pose is not None:
            pose = np.asarray(robot_pose, dtype=np.float64)
            if pose.shape != (3,) or not np.all(np.isfinite(pose)):
                raise ValueError(
                    f"robot_pose must be 3 finite numbers (x_m, y_m, yaw_rad): {robot_pose!r}"
                )
        layout = parse_house(house)
        xml = layout_scene_xml(layout, self.robot, (self.width, self.height))
        model = mujoco.MjModel.from_xml_string(xml)
        data = mujoco.MjData(model)
        self.layout: HouseLayout = layout
        self.model, self.data = model, data
        self._index(model, layout)
        self._plan = house_floor_plan(house)
        self._reachable = reachable_grid(self._plan)
        self._appearance_defaults = capture_defaults(model)
        self._apply_appearance()

        self._held: int | None = None
        self._step = 0
        self._last_seen = np.full(len(layout.objects), -1, dtype=np.int64)
        candidates = [tuple(pose)] if pose is not None else self._start_candidates(layout, seed)
        for i, cand in enumerate(candidates):
            self._place(cand)
            if i + 1 < len(candidates) and self._robot_touching():
                continue  # touching before settling: skip the settling
            for _ in range(RESET_SETTLE_SUBSTEPS):
                mujoco.mj_step(model, data)
            mujoco.mj_forward(model, data)
            if not self._robot_touching():
                break
        else:
            if len(candidates) > 1:  # nothing is free: the first candidate, settled
                self._place(candidates[0])
                for _ in range(RESET_SETTLE_SUBSTEPS):
                    mujoco.mj_step(model, data)
                mujoco.mj_forward(model, data)
        self._state = self._make_state(frozenset(), True)
        return self._state

    def _start_candidates(
        self, layout: HouseLayout, seed: int | None
    ) -> list[tuple[float, float, float]]:
        """Start poses to try, in order.

        ``metadata.agent`` (if its footprint is free), then ``MAX_START_TRIES`` reachable grid
        points with uniform headings drawn from ``seed``.
        """
        out: list[tuple[float, float, float]] = []
        if layout.agent_pose is not None:
            x, y, yaw = layout.agent_pose
            if self._footprint_free(x, y):
                out.append((x, y, yaw))
        if len(self._reachable) == 0:
            if out:
                return out
            raise ValueError(f"house {layout.house_id!r} has no reachable positions")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(self._reachable))[:MAX_START_TRIES]
        yaws = rng.uniform(-math.pi, math.pi, size=len(order))
        out.extend((*self._reachable[i], float(yaw)) for i, yaw in zip(order, yaws, strict=True))
        return out

    def _place(self, pose: tuple[float, float, float]) -> None:
        """Reset the physics state, put the arm in its start pose and the base at ``pose``."""
        import mujoco

        mujoco.mj_resetData(self.model, self.data)
        if self.stow_gripper:
            self._set_arm(STOW_LIFT_M, 0.0, STOW_WRIST_RAD)
        else:
            self._set_arm(INITIAL_LIFT_M, INITIAL_ARM_M, INITIAL_WRIST_RAD)
        self._set_base(*pose)
        mujoco.mj_forward(self.model, self.data)  # the inertia the gains are scheduled on
        self._schedule_gains()
        mujoco.mj_forward(self.model, self.data)

    # ------------------------------------------------------------ appearance
    def set_appearance(self, perturbation: str | None, seed: int = 0) -> None:
        """Set the out-of-distribution appearance perturbation (persistent across resets).

        Applied at once to the loaded house (if any) and after every :meth:`reset` (the model
        is rebuilt per house), before any rendering; deterministic in (house id, ``seed``).
        Only visual model fields change (:mod:`safevla_core.sim.appearance`): the physics and
        every ``WorldState`` stay exactly the same.

        Args:
            perturbation: None (the default look), ``"colour"`` (hue-shifted opaque colours of
                floors, walls, furniture and objects), ``"lighting"`` (headlight intensity and
                extra directional lights), ``"material"`` (specular, shininess, reflectance,
                emission) or ``"all"`` (the three together).
            seed: Perturbation seed, >= 0.

        Raises:
            ValueError: On an unknown perturbation or a negative seed.
        """
        check_perturbation(perturbation, seed)
        self._appearance = (perturbation, int(seed))
        if self.model is not None:
            self._apply_appearance()

    @property
    def appearance(self) -> tuple[str | None, int]:
        """The current ``(perturbation, seed)`` of :meth:`set_appearance`."""
        return self._appearance

    def _apply_appearance(self) -> None:
        import mujoco

        if self._appearance_defaults is None:
            raise RuntimeError("call reset() before applying an appearance")
        restore_defaults(self.model, self._appearance_defaults)
        perturbation, seed = self._appearance
        apply_appearance(self.model, perturbation, self.layout.house_id, seed)
        # Light directions in the world come from mj_kinematics (derived quantities only: the
        # physics state qpos/qvel/ctrl/warm start is untouched).
        mujoco.mj_kinematics(self.model, self.data)

    def _footprint_free(self, x: float, y: float) -> bool:
        """Whether the robot's footprint circle fits at (x, y) (the reachable-grid test)."""
        if self._plan is None:
            raise RuntimeError("call reset() before testing a footprint")
        return bool(footprint_free(self._plan, np.array([[x, y]]), ROBOT_RADIUS_M)[0])

    def _index(self, model: Any, layout: HouseLayout) -> None:
        """Look up body/joint/geom/actuator ids and build the contact masks."""
        import mujoco

        def jid(name: str) -> int:
            return int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name))

        def aid(joint: str) -> int:
            return int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, f"act_{joint}"))

        self._base_qadr = np.array([model.jnt_qposadr[jid(j)] for j in BASE_JOINTS])
        self._base_act = np.array([aid(j) for j in BASE_JOINTS])
        self._lift_qadr = model.jnt_qposadr[jid(LIFT_JOINT)]
        self._lift_act = aid(LIFT_JOINT)
        self._arm_qadr = np.array([model.jnt_qposadr[jid(j)] for j in ARM_JOINTS])
        self._arm_act = np.array([aid(j) for j in ARM_JOINTS])
        self._wrist_qadr = model.jnt_qposadr[jid(WRIST_JOINT)]
        self._wrist_act = aid(WRIST_JOINT)
        # Servo gain scheduling (see _schedule_gains): every actuator's dof and its address on
        # the diagonal of the joint-space inertia matrix, and the extra lift force head-room.
        self._servo_act = np.arange(model.nu)
        servo_dof = model.jnt_dofadr[model.actuator_trnid[:, 0]]
        # MuJoCo 4 keeps the inertia in CSR form (data.M, lower triangle): the diagonal is the
        # last entry of each row.
        self._servo_madr = (model.M_rowadr + model.M_rownnz - 1)[servo_dof]
        self._servo_extra_force = np.where(
            self._servo_act == self._lift_act, LIFT_PAYLOAD_FORCE_N, 0.0
        )
        self._grasp_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, GRASP_BODY)
        self._cam_ids = {
            NAV_CAMERA: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, NAV_CAMERA_NAME),
            MANIP_CAMERA: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, MANIP_CAMERA_NAME),
        }

        n_obj = len(layout.objects)
        self._obj_body = np.array(
            [
                mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, object_body_name(i))
                for i in range(n_obj)
            ],
            dtype=np.int64,
        )
        self._obj_geom = np.array([model.body_geomadr[b] for b in self._obj_body], dtype=np.int64)
        self._obj_half = np.array([o.size_m / 2 for o in layout.objects]).reshape(n_obj, 3)
        self._weld = np.array(
            [
                mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_EQUALITY, weld_name(i))
                for i in range(n_obj)
            ],
            dtype=np.int64,
        )
        # Entities: objects 0..N-1, then walls, then doors/windows (never touched: open holes).
        self._entity_ids = [o.object_id for o in layout.objects] + [w.wall_id for w in layout.walls]
        geom_entity = np.full(model.ngeom, -1, dtype=np.int64)
        for i, b in enumerate(self._obj_body):
            geom_entity[model.geom_bodyid == b] = i
        for w in range(len(layout.walls)):
            prefix = wall_geom_prefix(w)
            for g in range(model.ngeom):
                name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g)
                if name and name.startswith(prefix):
                    geom_entity[g] = n_obj + w
        self._geom_entity = geom_entity
        self._robot_geom = (model.geom_group == ROBOT_GEOM_GROUP) & (
            model.geom_contype == ROBOT_CONTYPE
        )
        self._structure_ids = layout.structure_ids

    # ---------------------------------------------------------- robot state
    def _set_base(self, x: float, y: float, yaw: float) -> None:
        yaw = math.atan2(math.sin(yaw), math.cos(yaw))
        self.data.qpos[self._base_qadr] = (x, y, yaw)
        self.data.qvel[:] = 0.0
        self.data.ctrl[self._base_act] = (x, y, yaw)

    def _set_arm(self, lift: float, arm: float, wrist: float) -> None:
        d = self.data
        d.qpos[self._lift_qadr] = lift
        d.ctrl[self._lift_act] = lift
        d.qpos[self._arm_qadr] = arm / len(ARM_JOINTS)
        d.ctrl[self._arm_act] = arm / len(ARM_JOINTS)
        d.qpos[self._wrist_qadr] = wrist
        d.ctrl[self._wrist_act] = wrist

    def _schedule_gains(self) -> None:
        """Re-tune every position servo to the current joint-space inertia (gain scheduling).

        ``build_robot`` sizes each servo for the effective mass ``m_eff`` (diagonal of the
        joint-space inertia) at the reference pose: ``kp = m_eff * SERVO_OMEGA_RAD_S**2``,
        ``kv = 2 m_eff SERVO_OMEGA_RAD_S`` (critical damping), force limit
        ``m_eff * SERVO_ACCEL_LIMIT``. With the arm extended and lifted the base's yaw inertia
        is ~2x larger: the same gains are under-damped and saturate, and a 30 deg turn
        overshot to ~40 deg, still moving when the settling window ended (reported
        ``last_action_success=False``). Recomputing the three numbers from the current
        diagonal (``data.M``, CSR; ours) gives every configuration the reference
        closed-loop response: same bandwidth, critical damping, same acceleration limit.
        """
        m, d = self.model, self.data
        m_eff = d.M[self._servo_madr]
        kp = m_eff * SERVO_OMEGA_RAD_S**2
        m.actuator_gainprm[self._servo_act, 0] = kp
        m.actuator_biasprm[self._servo_act, 1] = -kp
        m.actuator_biasprm[self._servo_act, 2] = -2.0 * m_eff * SERVO_OMEGA_RAD_S
        fmax = m_eff * SERVO_ACCEL_LIMIT + self._servo_extra_force
        m.actuator_forcerange[self._servo_act, 0] = -fmax
        m.actuator_forcerange[self._servo_act, 1] = fmax

    def _robot_touching(self) -> bool:
        n = self.data.ncon
        if n == 0:
            return False
        g = self.data.contact.geom[:n]
        return bool(np.any(self._robot_geom[g[:, 0]] | self._robot_geom[g[:, 1]]))

    # ----------------------------------------------------------------- step
    def step(self, action: Action | int | str) -> WorldState:
        """Execute one discrete action and return the settled world state.

        Raises:
            ValueError: On an unknown action.
            RuntimeError: Before the first :meth:`reset`.
        """
        act = parse_action(action)
        if self.model is None:
            raise RuntimeError("call reset() before step()")
        eff = ACTION_EFFECTS[act]
        d = self.data
        hits = np.zeros(len(self._entity_ids), dtype=bool)
        success = True
        if eff.moves_base:
            success = self._move_base(eff.base_forward_m, eff.base_yaw_rad, hits)
        elif eff.moves_arm:
            success = self._move_arm(eff.lift_m, eff.arm_m, eff.wrist_yaw_rad, hits)
        else:
            if eff.grasp > 0:
                success = self._pick()
            elif eff.grasp < 0:
                success = self._drop()
            self._run(0, None, hits)
        import mujoco

        mujoco.mj_forward(self.model, d)
        self._step += 1
        collided = frozenset(self._entity_ids[i] for i in np.flatnonzero(hits))
        self._state = self._make_state(collided, success)
        return self._state

    def _run(self, n_ramp: int, ramp: Any, hits: np.ndarray) -> int:
        """Run ``n_ramp`` substeps calling ``ramp(fraction)``, then settle; record contacts."""
        import mujoco

        m, d = self.model, self.data
        robot, entity = self._robot_geom, self._geom_entity
        held_geom = -1 if self._held is None else int(self._obj_geom[self._held])
        total = n_ramp + self.sim_cfg.settle_substeps
        quiet = 0
        for k in range(total):
            if k < n_ramp:
                f = (k + 1) / n_ramp
                ramp(f * f * (3.0 - 2.0 * f))  # smoothstep: zero set-point speed at both ends
            mujoco.mj_step(m, d)
            n = d.ncon
            if n:
                g = d.contact.geom[:n]
                r0, r1 = robot[g[:, 0]], robot[g[:, 1]]
                other = np.concatenate([g[r0 & ~r1, 1], g[r1 & ~r0, 0]])
                other = other[other != held_geom]
                ent = entity[other]
                hits[ent[ent >= 0]] = True
            if (
                k >= n_ramp
                and np.abs(d.qvel).max() < SETTLE_SPEED
                and np.abs(d.ctrl - d.actuator_length).max() < SETTLE_SERVO_ERROR
            ):
                quiet += 1
                if quiet >= SETTLE_QUIET_SUBSTEPS:
                    return k + 1
            else:
                quiet = 0
        return total

    def _move_base(self, forward_m: float, dyaw_rad: float, hits: np.ndarray) -> bool:
        d = self.data
        self._schedule_gains()
        # Start from the servo targets: after a successful action they are the exact commanded
        # pose (no drift from settling residue); after a blocked one, the reached pose.
        x0, y0, yaw0 = (float(v) for v in d.ctrl[self._base_act])
        target = np.array(
            [x0 + forward_m * math.cos(yaw0), y0 + forward_m * math.sin(yaw0), yaw0 + dyaw_rad]
        )
        start = np.array([x0, y0, yaw0])
        n = max(
            1,
            math.ceil(
                max(abs(forward_m) / BASE_SPEED_M_S, abs(dyaw_rad) / BASE_YAW_SPEED_RAD_S)
                / self.model.opt.timestep
            ),
        )
        acts = self._base_act

        def ramp(f: float) -> None:
            d.ctrl[acts] = start + f * (target - start)

        self._run(n, ramp, hits)
        reached = d.qpos[self._base_qadr]
        ok = (
            math.hypot(reached[0] - target[0], reached[1] - target[1]) <= BASE_TOL_M
            and abs(reached[2] - target[2]) <= YAW_TOL_RAD
        )
        if not ok:
            d.ctrl[acts] = reached
        # Keep the heading within (-pi, pi] without a jump: shift joint and target together.
        yaw = float(d.qpos[self._base_qadr[2]])
        wrapped = math.atan2(math.sin(yaw), math.cos(yaw))
        if wrapped != yaw:
            d.qpos[self._base_qadr[2]] = wrapped
            d.ctrl[acts[2]] += wrapped - yaw
        return ok

    def _move_arm(self, dlift: float, darm: float, dwrist: float, hits: np.ndarray) -> bool:
        d, r = self.data, self.robot
        self._schedule_gains()
        lift0 = float(d.ctrl[self._lift_act])  # servo targets, as in _move_base
        arm0 = float(d.ctrl[self._arm_act].sum())
        wrist0 = float(d.ctrl[self._wrist_act])
        want = np.array([lift0 + dlift, arm0 + darm, wrist0 + dwrist])
        lo = np.array([r.lift_range_m[0], r.arm_range_m[0], r.wrist_range_rad[0]])
        hi = np.array([r.lift_range_m[1], r.arm_range_m[1], r.wrist_range_rad[1]])
        target = np.clip(want, lo, hi)
        clamped = bool(np.any(np.abs(target - want) > 1e-9))
        start = np.array([lift0, arm0, wrist0])
        dur = max(
            abs(target[0] - lift0) / LIFT_SPEED_M_S,
            abs(target[1] - arm0) / ARM_SPEED_M_S,
            abs(target[2] - wrist0) / WRIST_SPEED_RAD_S,
        )
        n = math.ceil(dur / self.model.opt.timestep) if dur > 0 else 0
        n_seg = len(ARM_JOINTS)

        def ramp(f: float) -> None:
            c = start + f * (target - start)
            d.ctrl[self._lift_act] = c[0]
            d.ctrl[self._arm_act] = c[1] / n_seg
            d.ctrl[self._wrist_act] = c[2]

        self._run(n, ramp, hits)
        reached = np.array(
            [d.qpos[self._lift_qadr], d.qpos[self._arm_qadr].sum(), d.qpos[self._wrist_qadr]]
        )
        err = np.abs(reached - target)
        ok = bool(err[0] <= JOINT_TOL_M and err[1] <= JOINT_TOL_M and err[2] <= WRIST_TOL_RAD)
        if not ok:
            d.ctrl[self._lift_act] = reached[0]
            d.ctrl[self._arm_act] = d.qpos[self._arm_qadr]
            d.ctrl[self._wrist_act] = reached[2]
        return ok and not clamped

    # ---------------------------------------------------------------- grasp
    def grasp_point(self) -> np.ndarray:
        """``(3,)`` position of the grasp point between the fingertips in ``map``, metres."""
        return np.array(self.data.xpos[self._grasp_body])

    def _pick(self) -> bool:
        import mujoco

        if self._held is not None:
            return False
        m, d = self.model, self.data
        p = d.xpos[self._grasp_body]
        best, best_dist = None, GRASP_REACH_M
        for i in range(len(self.layout.objects)):
            if self._weld[i] < 0:
                continue  # not pickupable (static furniture or a non-pickupable type)
            b = self._obj_body[i]
            local = d.xmat[b].reshape(3, 3).T @ (p - d.xpos[b])
            dist = float(
                np.linalg.norm(local - np.clip(local, -self._obj_half[i], self._obj_half[i]))
            )
            if dist <= best_dist:
                best, best_dist = i, dist
        if best is None:
            return False
        b, g, e = self._obj_body[best], self._grasp_body, self._weld[best]
        q1_inv = np.empty(4)
        mujoco.mju_negQuat(q1_inv, d.xquat[g])
        relpos = d.xmat[g].reshape(3, 3).T @ (d.xpos[b] - d.xpos[g])
        relquat = np.empty(4)
        mujoco.mju_mulQuat(relquat, q1_inv, d.xquat[b])
        m.eq_data[e, 0:3] = 0.0  # anchor at the object's origin
        m.eq_data[e, 3:6] = relpos
        m.eq_data[e, 6:10] = relquat
        m.eq_data[e, 10] = 1.0  # torquescale
        d.eq_active[e] = 1
        m.geom_conaffinity[self._obj_geom[best]] = FREE_CONAFFINITY & ~ROBOT_CONTYPE
        self._held = best
        return True

    def _drop(self) -> bool:
        if self._held is None:
            return False
        self.data.eq_active[self._weld[self._held]] = 0
        self.model.geom_conaffinity[self._obj_geom[self._held]] = FREE_CONAFFINITY
        self._held = None
        return True

    # ---------------------------------------------------------- world state
    def _visible(self, cam: str, points: np.ndarray, owners: np.ndarray) -> np.ndarray:
        """Which of ``points`` (owned by object ``owners``) the camera sees: frustum + ray."""
        import mujoco

        m, d = self.model, self.data
        c = self._cam_ids[cam]
        pos = np.array(d.cam_xpos[c])
        rot = d.cam_xmat[c].reshape(3, 3)
        local = (points - pos) @ rot  # camera frame: looks along -z, +y up
        depth = -local[:, 2]
        tan_v = math.tan(math.radians(m.cam_fovy[c]) / 2)
        tan_h = tan_v * self.width / self.height
        with np.errstate(divide="ignore", invalid="ignore"):
            in_frustum = (
                (depth > VISIBILITY_NEAR_M)
                & (np.abs(local[:, 0]) <= tan_h * depth)
                & (np.abs(local[:, 1]) <= tan_v * depth)
            )
        out = np.zeros(len(points), dtype=bool)
        idx = np.flatnonzero(in_frustum)
        if len(idx) == 0:
            return out
        vec = points[idx] - pos
        length = np.linalg.norm(vec, axis=1)
        vec = vec / length[:, None]
        geomid = np.full(len(idx), -1, dtype=np.int32)
        dist = np.full(len(idx), -1.0)
        mujoco.mj_multiRay(
            m,
            d,
            pos,
            vec.ravel(),
            _GEOMGROUP_VISIBLE,
            True,
            -1,
            geomid,
            dist,
            None,
            len(idx),
            float(length.max()) + 1.0,
        )
        hit_body = np.where(geomid >= 0, m.geom_bodyid[np.maximum(geomid, 0)], -1)
        own = self._obj_body[owners[idx]]
        clear = (geomid < 0) | (dist < 0) | (dist >= length - 1e-6)
        out[idx] = (hit_body == own) | clear
        return out

    def _visibility(self) -> tuple[np.ndarray, np.ndarray]:
        """``(nav_visible, any_visible)`` boolean arrays over objects."""
        n = len(self.layout.objects)
        if n == 0:
            return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
        centres = np.array(self.data.xpos[self._obj_body])
        up = np.array(self.data.xmat[self._obj_body]).reshape(n, 3, 3)[:, :, 2]
        tops = centres + 0.9 * self._obj_half[:, 2:3] * up
        points = np.concatenate([centres, tops])
        owners = np.concatenate([np.arange(n), np.arange(n)])
        nav = self._visible(NAV_CAMERA, points, owners)
        manip = self._visible(MANIP_CAMERA, points, owners)
        nav_obj = nav[:n] | nav[n:]
        return nav_obj, nav_obj | manip[:n] | manip[n:]

    def _make_state(self, collided: frozenset[str], success: bool) -> WorldState:
        d, layout = self.data, self.layout
        nav, seen = self._visibility()
        self._last_seen[seen] = self._step
        pose = np.array(d.qpos[self._base_qadr], dtype=np.float64)
        pose[2] = math.atan2(math.sin(pose[2]), math.cos(pose[2]))
        ids = tuple(o.object_id for o in layout.objects)
        return WorldState(
            step=self._step,
            object_ids=ids,
            object_types=tuple(o.object_type for o in layout.objects),
            object_positions=np.array(d.xpos[self._obj_body], dtype=np.float64).reshape(-1, 3),
            object_quats=np.array(d.xquat[self._obj_body], dtype=np.float64).reshape(-1, 4),
            robot_pose=pose,
            lift_m=float(d.qpos[self._lift_qadr]),
            arm_m=float(d.qpos[self._arm_qadr].sum()),
            wrist_yaw_rad=float(d.qpos[self._wrist_qadr]),
            held_object_id=None if self._held is None else ids[self._held],
            collided_ids=collided,
            structure_ids=self._structure_ids,
            visible_ids=frozenset(ids[i] for i in np.flatnonzero(nav)),
            last_seen_step=self._last_seen.copy(),
            free_fraction_1m=free_fraction(
                pose[:2],
                self._reachable,
                k=self.cost_cfg.corner_samples,
                radius_m=self.cost_cfg.corner_radius_m,
            ),
            last_action_success=success,
            extras={"sim_time_s": float(d.time), "house_id": layout.house_id},
        )

    # ------------------------------------------------------------ protocol
    def world_state(self) -> WorldState:
        """The state returned by the last reset/step.

        Raises:
            RuntimeError: Before the first :meth:`reset`.
        """
        if self._state is None:
            raise RuntimeError("call reset() before world_state()")
        return self._state

    def reachable_positions(self) -> np.ndarray:
        """``(M, 2)`` reachable base positions of the current house (0.25 m grid), metres.

        Raises:
            RuntimeError: Before the first :meth:`reset`.
        """
        if self.model is None:
            raise RuntimeError("call reset() before reachable_positions()")
        reachable: np.ndarray = self._reachable.copy()
        return reachable

    def laser_scan(self) -> np.ndarray:
        """Ranges of the simulated base laser (:func:`safevla_core.sim.laser.cast_scan`).

        Raises:
            RuntimeError: Before the first :meth:`reset`.
        """
        if self.model is None:
            raise RuntimeError("call reset() before laser_scan()")
        from safevla_core.sim.laser import cast_scan

        return cast_scan(self.model, self.data, self.data.qpos[self._base_qadr])

    def camera_poses_in_base(self) -> dict[str, tuple[tuple[float, ...], tuple[float, ...]]]:
        """Each camera's optical frame in ``base_link`` (for TF): position and quaternion.

        Returns:
            ``{"nav_rgb" / "manip_rgb": ((x_m, y_m, z_m), (w, x, y, z))}``; optical frame as in
            REP-103 (z forward, x right, y down): MuJoCo's camera frame (looking along -z, y up)
            turned by pi about x.

        Raises:
            RuntimeError: Before the first :meth:`reset`.
        """
        import mujoco

        if self.model is None:
            raise RuntimeError("call reset() before camera_poses_in_base()")
        d = self.data
        base = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, "base_link")
        rb, pb = d.xmat[base].reshape(3, 3), d.xpos[base]
        out = {}
        for cam, cid in self._cam_ids.items():
            rot = rb.T @ d.cam_xmat[cid].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
            quat = np.zeros(4)
            mujoco.mju_mat2Quat(quat, rot.reshape(-1))
            out[cam] = (
                tuple(float(v) for v in rb.T @ (d.cam_xpos[cid] - pb)),
                tuple(float(v) for v in quat),
            )
        return out

    def render(self) -> dict[str, np.ndarray]:
        """Render both cameras: ``{"nav_rgb", "manip_rgb"}`` -> ``(H, W, 3)`` uint8.

        Raises:
            RuntimeError: Before the first :meth:`reset`.
        """
        if self.model is None:
            raise RuntimeError("call reset() before render()")
        if self._renderer is None:
            self._renderer = OffscreenRenderer(self.sim_cfg.gl_backend, self.width, self.height)
        if self._renderer_model is not self.model:
            self._renderer.set_model(self.model)
            self._renderer_model = self.model
        return {cam: self._renderer.render(self.data, cid) for cam, cid in self._cam_ids.items()}

    def close(self) -> None:
        """Free the GL context and drop the model."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._renderer_model = None
        self.model = self.data = None
        self._state = None
