"""The 20 discrete Stretch actions of SPOC / SafeVLA and their effects in SI units.

Source: SafeVLA (Zhang et al., NeurIPS 2025) appendix and the authors' code, summarised in
``shared/design/REFERENCE.md`` ("Robot, observations, actions"). Distances are metres, angles are
radians (REP-103); the paper states them in centimetres and degrees.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class Action(enum.IntEnum):
    """Discrete action indices, in the order of SPOC's action vocabulary.

    The integer value is the index used by the policy head (20 logits) and by the
    ``DiscreteAction`` ROS message.
    """

    MOVE_AHEAD = 0  # m
    MOVE_BACK = 1  # b
    ROTATE_RIGHT = 2  # r
    ROTATE_LEFT = 3  # l
    ROTATE_RIGHT_SMALL = 4  # rs
    ROTATE_LEFT_SMALL = 5  # ls
    LIFT_UP = 6  # yp
    LIFT_DOWN = 7  # ym
    LIFT_UP_SMALL = 8  # yps
    LIFT_DOWN_SMALL = 9  # yms
    ARM_EXTEND = 10  # zp
    ARM_RETRACT = 11  # zm
    ARM_EXTEND_SMALL = 12  # zps
    ARM_RETRACT_SMALL = 13  # zms
    WRIST_POS = 14  # wp
    WRIST_NEG = 15  # wm
    PICKUP = 16  # p
    DROP = 17  # d
    END = 18  # end
    SUB_DONE = 19  # sub_done


#: Short names, index-aligned with :class:`Action` (SPOC's vocabulary; REFERENCE.md).
ACTION_NAMES: tuple[str, ...] = (
    "m",
    "b",
    "r",
    "l",
    "rs",
    "ls",
    "yp",
    "ym",
    "yps",
    "yms",
    "zp",
    "zm",
    "zps",
    "zms",
    "wp",
    "wm",
    "p",
    "d",
    "end",
    "sub_done",
)

NUM_ACTIONS: int = len(ACTION_NAMES)
assert NUM_ACTIONS == 20 == len(Action)

#: The "previous action" token at an episode's first step, when no action was taken yet: one past
#: the last action index, so the policy's previous-action embedding has 21 rows (SPOC embeds the
#: previous action, REFERENCE.md "Policy", with an extra "start" entry after the 20 actions).
#: Never a valid action.
START_ACTION: int = NUM_ACTIONS

#: Base translation per move action, metres (REFERENCE.md: m/b +/-0.2 m).
BASE_STEP_M = 0.2
#: Base rotation per large / small rotate action, radians (r/l 30 deg, rs/ls 6 deg).
ROTATE_LARGE_RAD = math.radians(30.0)
ROTATE_SMALL_RAD = math.radians(6.0)
#: Lift increments, metres (yp/ym 0.1 m, yps/yms 0.02 m).
LIFT_LARGE_M = 0.1
LIFT_SMALL_M = 0.02
#: Arm extension increments, metres (zp/zm 0.1 m, zps/zms 0.02 m).
ARM_LARGE_M = 0.1
ARM_SMALL_M = 0.02
#: Wrist yaw increment, radians (wp/wm -/+10 deg, bounded by the joint limits).
WRIST_STEP_RAD = math.radians(10.0)


@dataclass(frozen=True)
class ActionEffect:
    """Commanded change of each degree of freedom for one action.

    Attributes:
        base_forward_m: Translation along the robot's +x axis (REP-103 forward), metres.
        base_yaw_rad: Rotation about +z, radians; positive is counter-clockwise (left).
        lift_m: Change of the lift height, metres.
        arm_m: Change of the telescoping arm extension, metres.
        wrist_yaw_rad: Change of the wrist yaw, radians.
        grasp: ``+1`` pick up, ``-1`` release, ``0`` no gripper command.
        terminal: True for ``end`` (the episode ends; success is judged).
        sub_done: True for ``sub_done`` (marks a sub-task done; no motion).
    """

    base_forward_m: float = 0.0
    base_yaw_rad: float = 0.0
    lift_m: float = 0.0
    arm_m: float = 0.0
    wrist_yaw_rad: float = 0.0
    grasp: int = 0
    terminal: bool = False
    sub_done: bool = False

    @property
    def moves_base(self) -> bool:
        """True if the action translates or rotates the mobile base."""
        return self.base_forward_m != 0.0 or self.base_yaw_rad != 0.0

    @property
    def moves_arm(self) -> bool:
        """True if the action moves the lift, arm or wrist."""
        return self.lift_m != 0.0 or self.arm_m != 0.0 or self.wrist_yaw_rad != 0.0


#: Effects indexed by action. ``r`` turns right, i.e. negative yaw in REP-103.
#: ``wp`` rotates the wrist by -10 deg and ``wm`` by +10 deg, as in the authors' code.
ACTION_EFFECTS: tuple[ActionEffect, ...] = (
    ActionEffect(base_forward_m=BASE_STEP_M),
    ActionEffect(base_forward_m=-BASE_STEP_M),
    ActionEffect(base_yaw_rad=-ROTATE_LARGE_RAD),
    ActionEffect(base_yaw_rad=ROTATE_LARGE_RAD),
    ActionEffect(base_yaw_rad=-ROTATE_SMALL_RAD),
    ActionEffect(base_yaw_rad=ROTATE_SMALL_RAD),
    ActionEffect(lift_m=LIFT_LARGE_M),
    ActionEffect(lift_m=-LIFT_LARGE_M),
    ActionEffect(lift_m=LIFT_SMALL_M),
    ActionEffect(lift_m=-LIFT_SMALL_M),
    ActionEffect(arm_m=ARM_LARGE_M),
    ActionEffect(arm_m=-ARM_LARGE_M),
    ActionEffect(arm_m=ARM_SMALL_M),
    ActionEffect(arm_m=-ARM_SMALL_M),
    ActionEffect(wrist_yaw_rad=-WRIST_STEP_RAD),
    ActionEffect(wrist_yaw_rad=WRIST_STEP_RAD),
    ActionEffect(grasp=1),
    ActionEffect(grasp=-1),
    ActionEffect(terminal=True),
    ActionEffect(sub_done=True),
)

#: Actions that do not move anything: the shield's "do nothing" choice is to publish none.
NON_MOTION_ACTIONS: frozenset[Action] = frozenset({Action.END, Action.SUB_DONE})


def parse_action(value: int | str | Action) -> Action:
    """Turn an index, a short name (``"m"``) or an enum member into an :class:`Action`.

    Args:
        value: Integer index in ``[0, 20)``, short name from :data:`ACTION_NAMES`, enum
            member name (``"MOVE_AHEAD"``), or an :class:`Action`.

    Returns:
        The action.

    Raises:
        ValueError: If the value names no action (out of range, unknown name, bool, NaN).
    """
    if isinstance(value, Action):
        return value
    if isinstance(value, bool):
        raise ValueError(f"unknown action {value!r}: booleans are not action indices")
    if isinstance(value, int):
        if 0 <= value < NUM_ACTIONS:
            return Action(value)
        raise ValueError(f"unknown action index {value}: expected 0..{NUM_ACTIONS - 1}")
    if isinstance(value, str):
        if value in ACTION_NAMES:
            return Action(ACTION_NAMES.index(value))
        if value.upper() in Action.__members__:
            return Action[value.upper()]
        raise ValueError(f"unknown action name {value!r}: expected one of {ACTION_NAMES}")
    raise ValueError(f"unknown action {value!r} of type {type(value).__name__}")


def action_name(action: int | Action) -> str:
    """Short SPOC name of an action index (``0 -> "m"``).

    Raises:
        ValueError: If the index is out of range.
    """
    return ACTION_NAMES[parse_action(action)]
