"""Named evaluation settings of the seed papers, usable wherever an evaluation attack list is given
(``eval.attacks=fgsm,pgd20,cw_inf,aa``).

``eps: "auto"`` is the dataset's conventional budget (8/255 CIFAR/SVHN, 0.3 MNIST, 4/255 Tiny-ImageNet,
0.1 digits); step sizes are written relative to it, so a preset means the same thing on every dataset
(at eps = 8/255, ``eps/4`` is the 2/255 of RobNet and RACL).
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # FGSM (all four seeds).
    "fgsm": {"name": "fgsm", "eps": "auto"},
    # PGD-20, step eps/10: Huang et al. Sec. 4.
    "pgd20": {"name": "pgd", "eps": "auto", "step": "eps/10", "steps": 20},
    # PGD-20, step 2/255 at 8/255: RobNet and RACL.
    "pgd20_step2": {"name": "pgd", "eps": "auto", "step": "eps/4", "steps": 20},
    # PGD-10, step eps/10: RACL Table 1 (architectures trained without AT) and RACL Table 3's transfer
    # test ("10-iteration PGD" crafted on each source; the step is not given).
    "pgd10": {"name": "pgd", "eps": "auto", "step": "eps/10", "steps": 10},
    # PGD-100, step 2/255 at 8/255: RACL's white-box PGD-100 (Sec. 3.2, Fig. 3a) and RobNet supplement
    # Table 4's transfer attack (crafted on an independently trained copy of each source).
    "pgd100": {"name": "pgd", "eps": "auto", "step": "eps/4", "steps": 100},
    # PGD-50 with 10 restarts (Madry et al.'s MNIST evaluation scale).
    "pgd50x10": {"name": "pgd", "eps": "auto", "step": "eps/20", "steps": 50, "restarts": 10},
    # MI-FGSM with momentum 1.0, 20 iterations (RACL, RNAS-CL).
    "mim": {"name": "mim", "eps": "auto", "steps": 20, "step": "eps/10"},
    # CW-inf: the clipped CW margin optimised by PGD, 20 steps of eps/10, as Huang et al.'s evaluator runs
    # it (Huang Table 2; RNAS-CL Table 4 does not give its settings).
    "cw_inf": {"name": "cw_inf", "eps": "auto", "step": "eps/10", "steps": 20},
    # GAMA-PGD-100 (Sriramanan et al. 2020), the authors' settings: Huang Table 2's GAMA^100.
    "gama100": {"name": "gama", "eps": "auto"},
    # L2 PGD-20 at eps 0.5 (the CIFAR-10 L2 threat model of RobustBench).
    "pgd20_l2": {"name": "pgd", "eps": 0.5, "step": "eps/8", "steps": 20, "norm": "l2"},
    # AutoAttack, standard version (APGD-CE, APGD-T, FAB-T, Square) and rand version (EOT).
    "aa": {"name": "autoattack", "eps": "auto", "version": "standard"},
    "aa_rand": {"name": "autoattack", "eps": "auto", "version": "rand"},
}
