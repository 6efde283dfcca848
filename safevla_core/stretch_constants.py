"""Facts about the Hello Robot Stretch: one place for each, with its source.

Everything that describes the robot itself (its base footprint, joint ranges, gripper, where the
grasp point sits) is defined here once; the modules that use a fact import it, and the radii that
mean different things (a house's clearance, the turn-in-place circle, the footprint's own circle)
are distinct names derived from the one footprint below.

Sources:

* URDF: ``hello-robot-stretch-urdf`` (import name ``stretch_urdf``), files
  ``SE3/stretch_description_SE3_eoa_wrist_dw3_tool_sg3.urdf`` (Stretch 3, the embedded
  simulator's default model) and ``RE1V0/stretch_description_RE1V0_tool_stretch_gripper.urdf``
  (Stretch RE1, the robot of the paper); the two agree on every number below
  (``test/core/test_stretch_constants.py`` reads them back from the installed files).
* Base footprint: the vertex extent of the URDF's ``base_link`` collision mesh
  (``meshes/base_link_collision.STL``), in the ``base_link`` frame (x forward, y left): x in
  [-0.2865, 0.0585], y in [-0.1805, 0.1815]; a 0.345 m deep x 0.362 m wide base whose
  ``base_link`` origin, the axis the base turns about, sits 0.114 m ahead of the footprint's
  centre. (Hello Robot's published footprint, ~0.34 m x 0.33 m, is the same base without the
  collision mesh's margin.)
* Grasp point: measured on the embedded simulator's SE3 model (``MujocoBackend.grasp_point()`` at
  lift 0.3 m, arm 0 -> 0.516 m, wrist 0; ``test/core/test_pickup_fetch.py`` re-checks them).
* Gripper aperture: Hello Robot's ``hello_helpers`` ``GripperConversion`` defaults.
"""

from __future__ import annotations

import math

# --- base footprint (URDF base_link collision mesh, base_link frame, metres) ----------------------

#: Rear edge of the base, metres (x of the mesh's rearmost vertex).
BASE_X_MIN_M: float = -0.2865
#: Front edge of the base, metres.
BASE_X_MAX_M: float = 0.0585
#: Right and left edges of the base, metres (the mesh is 1 mm off centre).
BASE_Y_MIN_M: float = -0.1805
BASE_Y_MAX_M: float = 0.1815
#: Half the base's width about ``base_link``'s x axis, metres: the larger side, 0.1815.
BASE_HALF_WIDTH_M: float = max(-BASE_Y_MIN_M, BASE_Y_MAX_M)
#: Depth of the base, front to back, metres (0.345).
BASE_DEPTH_M: float = BASE_X_MAX_M - BASE_X_MIN_M
#: Width of the base, side to side, metres (0.362): the narrowest gap the base drives through.
BASE_WIDTH_M: float = BASE_Y_MAX_M - BASE_Y_MIN_M
#: x of the footprint's centre in ``base_link``, metres (-0.114: ``base_link`` is not centred).
BASE_CENTRE_X_M: float = 0.5 * (BASE_X_MIN_M + BASE_X_MAX_M)
#: Radius of the circle about the footprint's *centre* that holds the base, metres:
#: hypot(0.345 / 2, 0.1815) = 0.2504 (y taken about the x axis, the 1 mm offset ignored on the
#: safe side). A footprint check with this radius must centre it at
#: ``BASE_CENTRE_X_M`` ahead of ``base_link``, not at the robot pose.
BASE_CENTRED_RADIUS_M: float = math.hypot(0.5 * BASE_DEPTH_M, BASE_HALF_WIDTH_M)
#: Radius of the circle about ``base_link`` (the rotation axis) that holds the base, metres: the
#: rear corners, hypot(0.2865, 0.1815) = 0.3392, rounded up to the centimetre = 0.34. The base
#: sweeps this circle when it turns in place; a position is reachable when it is clear
#: (AI2-THOR's reachable positions are likewise places where the agent can turn).
BASE_TURN_RADIUS_M: float = math.ceil(100.0 * math.hypot(BASE_X_MIN_M, BASE_HALF_WIDTH_M)) / 100.0

# --- joint ranges (URDF <limit>) -----------------------------------------------------------------

#: ``joint_lift`` range, metres.
LIFT_RANGE_M: tuple[float, float] = (0.0, 1.1)
#: Number of telescoping arm segments (``joint_arm_l0`` .. ``joint_arm_l3``).
ARM_SEGMENTS: int = 4
#: Range of each arm segment, metres.
ARM_SEGMENT_MAX_M: float = 0.13
#: ``wrist_extension`` (the sum of the four segments) range, metres: 0 .. 4 x 0.13 = 0.52.
ARM_RANGE_M: tuple[float, float] = (0.0, ARM_SEGMENTS * ARM_SEGMENT_MAX_M)
#: ``joint_wrist_yaw`` range, radians.
WRIST_YAW_RANGE_RAD: tuple[float, float] = (-1.75, 4.0)
#: Upper ends of the lift and arm ranges, metres (1.1 and 0.52).
LIFT_MAX_M: float = LIFT_RANGE_M[1]
ARM_MAX_M: float = ARM_RANGE_M[1]

# --- laser ---------------------------------------------------------------------------------------

#: Laser (RPLidar A1) pose in ``base_link`` (x_m, y_m, yaw_rad): ``joint_laser`` of the SE3 URDF
#: (xyz 0.004 0 0.1664, rpy 0 0 3.1416).
LASER_POSE_IN_BASE: tuple[float, float, float] = (0.004, 0.0, math.pi)
#: Height of the laser's scan plane above the floor, metres (the same joint's z).
LASER_HEIGHT_M: float = 0.1664

# --- gripper -----------------------------------------------------------------------------------

#: Gripper aperture open / closed, metres (``GripperConversion``: open_aperture_m 0.09,
#: closed_aperture_m 0.0).
GRIPPER_OPEN_M: float = 0.09
GRIPPER_CLOSED_M: float = 0.0

# --- grasp point (measured on the SE3 model, see the module docstring) ---------------------------

#: x of the grasp point (between the fingertips) in ``base_link`` at arm 0 and wrist yaw 0,
#: metres (the arm reaches out along -y, the robot's right).
GRASP_X_M: float = -0.021
#: Lateral distance of the grasp point from ``base_link`` at zero extension, metres (-y side).
GRASP_LATERAL_AT_ZERO_ARM_M: float = 0.415
#: Height of the grasp point above the floor minus the lift height, metres (z = lift + 0.11).
GRASP_Z_MINUS_LIFT_M: float = 0.11
#: Farthest horizontal distance of the grasp point from ``base_link``, metres: the arm fully
#: extended, hypot(-0.021, 0.415 + 0.52) = 0.9352. Objects the gripper grasps or pushes lie about
#: this far from the robot pose.
GRASP_REACH_M: float = math.hypot(GRASP_X_M, GRASP_LATERAL_AT_ZERO_ARM_M + ARM_MAX_M)
