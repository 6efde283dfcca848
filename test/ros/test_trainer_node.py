"""The trainer node as a real process: a tiny PPO-Lagrangian run on the embedded simulator.

Tiny on purpose (about 10 s here): one synchronous environment, 8 steps per rollout, 16 steps in
all (so 2 iterations), a d_model 32 policy with 1+1 layers and an 8-step context, 2/1/1 houses and
10-step episodes. A peer node records ``training/status`` and the training cameras.
"""

from __future__ import annotations

import pytest
import yaml

from test.ros.test_nodes_integration import logs, node_command, running, spin_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]

RUN_TIMEOUT_S = 90.0
NUM_STEPS = 8
TOTAL_ENV_STEPS = 16
COST_LIMIT = 0.75  # not the default 2.31964, so the status must carry the configured value


def tiny_config(out_dir) -> dict:
    """A core training config (safevla_core.config keys) that trains for 2 iterations."""
    return {
        "task": {"name": "objnav", "max_steps_train": 10, "cost_limit": COST_LIMIT},
        "houses": {"num_train": 2, "num_val": 1, "num_test": 1},
        "policy": {
            "d_model": 32,
            "num_heads": 4,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "context_steps": 8,
            "image_width": 160,
            "image_height": 96,
        },
        "train": {
            "method": "ppo_lag",
            "vector": "sync",
            "num_envs": 1,
            "num_steps": NUM_STEPS,
            "total_env_steps": TOTAL_ENV_STEPS,
            "out_dir": str(out_dir),
            "checkpoint_every": 1,
            "torch_threads": 1,
        },
    }


def test_trainer_publishes_status_and_cameras_and_writes_checkpoints(ros_context, tmp_path):
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    from safevla_ros import conversions as conv
    from safevla_ros.msg import TrainingStatus
    from safevla_ros.qos import SENSOR_QOS, STATUS_HISTORY_QOS, Topics

    run_dir = tmp_path / "run"
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(tiny_config(run_dir)))
    commands = {
        "trainer": node_command(
            "trainer_node", "trainer_node.yaml", {"config_file": cfg_file, "resume": False}
        ),
        # A missing config file: the node reports it and exits with status 1.
        "trainer_bad": node_command(
            "trainer_node", "trainer_node.yaml", {"config_file": tmp_path / "missing.yaml"}
        )
        + ["-r", "__ns:=/bad"],
    }
    node = rclpy.create_node("trainer_probe", context=ros_context)
    status: list = []
    images: dict[str, list] = {"nav": [], "manip": []}
    # Transient local: both statuses arrive even if discovery ends after the first iteration.
    node.create_subscription(
        TrainingStatus, Topics.TRAINING_STATUS, status.append, STATUS_HISTORY_QOS
    )
    for key, topic in (("nav", Topics.TRAINING_NAV_IMAGE), ("manip", Topics.TRAINING_MANIP_IMAGE)):
        node.create_subscription(Image, topic, images[key].append, SENSOR_QOS)
    with running(commands, tmp_path) as procs:
        done = lambda: procs["trainer"].poll() is not None and len(status) >= 2  # noqa: E731
        finished = spin_until(node, ros_context, done, RUN_TIMEOUT_S)
        spin_until(node, ros_context, lambda: False, 0.3)  # late images
        assert finished, f"trainer did not finish; {len(status)} status messages\n" + logs(tmp_path)
        assert procs["trainer"].returncode == 0, logs(tmp_path)
        assert procs["trainer_bad"].wait(timeout=30) == 1
    node.destroy_node()

    # One status per iteration: 1 environment x 8 steps = 8 env steps per iteration.
    assert [(s.iteration, s.env_steps) for s in status] == [(1, 8), (2, 16)]
    for s in status:
        assert s.cost_limit == pytest.approx(COST_LIMIT)
        assert s.lagrange_multiplier >= 0.0
    # 10-step episodes: by step 16 at least one episode finished, so the episode means exist.
    assert np.isfinite(status[1].mean_episode_cost) and 0.0 <= status[1].success_rate <= 1.0
    # Environment 0's cameras at the policy's size (train_render_policy_size), rgb8.
    for key in ("nav", "manip"):
        assert images[key], f"no training {key} image"
        rgb = conv.image_to_rgb(images[key][-1])
        assert rgb.shape == (96, 160, 3) and rgb.std() > 0, "blank or mis-sized camera"
    assert images["nav"][-1].header.frame_id == "nav_camera"
    assert images["manip"][-1].header.frame_id == "manip_camera"
    # A checkpoint per iteration (checkpoint_every 1), with the resolved config beside them.
    assert sorted(p.name for p in run_dir.glob("ckpt_*.pt")) == ["ckpt_000001.pt", "ckpt_000002.pt"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["task"][
        "cost_limit"
    ] == pytest.approx(COST_LIMIT)
    assert "missing.yaml" in logs(tmp_path)
