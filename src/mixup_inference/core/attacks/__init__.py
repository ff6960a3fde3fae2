"""Attacks: L-inf PGD, the paper's adaptive PGD and EOT PGD on MI's mixed copies, all one loop
(`pgd`); the attacks that run through a whole randomized defense (`defended`); one spec per attack
and the attack names (`specs`); and the robustness evaluation's attack kinds, one file each
(`kinds`)."""
