"""Defenses: Mixup Inference and MI-Combined (`mi`), the randomised input-transformation baselines of
the paper's Tables 4/5 (`baselines`), the averaged-softmax engine every defense runs on
(`averaging`), the MI sample pool (`pool`), and one spec per defense with the setting grammar
(`specs`)."""
