r"""Which visual features tell the Safety-ObjNav target types apart? A linear probe.

From expert shards (``safevla collect --task objnav``), every navigation-camera frame where an
``end`` would succeed (``end_would_succeed``: a target within the success distance in view) is
labelled with the episode's target type. A multinomial logistic regression (scikit-learn,
standardised features, C = 0.1) is scored by 4-fold cross-validation grouped by house (every
frame is scored once, by a probe fitted on the other 3/4 of the houses), for each feature set:

- the frozen CNN's features (EfficientNet-Lite0, pooled over cells, and every cell);
- the parameter-free colour channels of ``PolicyConfig.colour_bins`` (per-cell histograms);
- per-cell mean colours (the first colour channel we tried, for comparison).

    safevla collect --config config/compare_cpu.yaml --task objnav --episodes 128 --seed 0 \
        --out-dir data/probe --no-progress
    .venv/bin/python scripts/probe_target_features.py data/probe

Prints, per feature set, the accuracy over all frames and its spread over the 4 folds (chance:
1 / the number of types). The figures quoted in
``PolicyConfig``'s docstring come from this script on the command above.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from safevla_core.config import PolicyConfig
from safevla_core.il import list_shards
from safevla_core.policy.encoders import VISUAL_CHANNELS, get_visual_encoder


def labelled_frames(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The end-ready frames: images ``(N, H, W, 3)`` uint8, target types and house ids ``(N,)``."""
    images, types, houses = [], [], []
    for path in list_shards(data):
        with np.load(path) as d:
            summaries = json.loads(str(d["summaries"]))
            for i in np.nonzero(d["end_would_succeed"])[0]:
                ep = summaries[int(d["episode_index"][i])]
                images.append(d["nav_rgb"][i])
                types.append(ep["target_type"])
                houses.append(ep["house_id"])
    if not images:
        raise SystemExit(f"{data}: no frame with end_would_succeed (ObjNav shards needed)")
    return np.stack(images), np.array(types), np.array(houses)


def main() -> None:
    """Parse the arguments, encode the frames and print the probe's accuracies."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.preprocessing import StandardScaler

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a folder of ObjNav expert shards")
    args = parser.parse_args()
    torch.set_num_threads(1)

    images, types, houses = labelled_frames(args.data)
    bins = 4
    enc = get_visual_encoder(PolicyConfig(colour_bins=bins))
    with torch.no_grad():
        feats = torch.cat([enc(images[i : i + 64]) for i in range(0, len(images), 64)]).numpy()
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        means = torch.nn.functional.adaptive_avg_pool2d(x, (feats.shape[2] * 4, feats.shape[3] * 4))
    n = len(images)
    cnn, hist = feats[:, :VISUAL_CHANNELS], feats[:, VISUAL_CHANNELS:]
    folds = list(GroupKFold(n_splits=4).split(images, types, houses))
    print(
        f"{n} frames, {len(set(types))} target types (chance {1 / len(set(types)):.3f}), "
        f"{len(np.unique(houses))} houses in 4 folds"
    )
    sets = {
        "CNN pooled over cells": cnn.mean((2, 3)),
        "CNN every cell": cnn.reshape(n, -1),
        f"colour histogram per cell ({bins**3} bins)": hist.reshape(n, -1),
        "colour histogram, whole image": hist.mean((2, 3)),
        "mean colours of 4x4 sub-cells": means.numpy().reshape(n, -1),
    }
    for name, feat in sets.items():
        right, per_fold = 0, []
        for train, test in folds:
            scaler = StandardScaler().fit(feat[train])
            clf = LogisticRegression(max_iter=3000, C=0.1)
            clf.fit(scaler.transform(feat[train]), types[train])
            hits = int((clf.predict(scaler.transform(feat[test])) == types[test]).sum())
            right += hits
            per_fold.append(hits / len(test))
        print(
            f"{name:<36} {feat.shape[1]:>6} dims   held-out-house accuracy {right / n:.3f} "
            f"(folds {min(per_fold):.3f}..{max(per_fold):.3f})"
        )


if __name__ == "__main__":
    main()
