"""Units for issue 34's AVX2-only Zen 3 EPYC, from the forced-AVX2 probes on this Zen 4 (2026-12-07): every
unit x (the issue's 161 s ERM epoch / the forced probe's ERM epoch), ERM and mixup steps set to the issue's
measured epochs (161 s, 180 s over 97 steps)."""
import json
avx2 = json.load(open("reports/bench/estimate/2026-12-07-avx2-forced.json"))
u = avx2["units"]["cifar10"]
ratio = (161 / 97) / u["train_step"]["erm"]
print("Zen 3 / forced-AVX2 ratio", round(ratio, 3))
out = dict(u)
out["train_step"] = {k: v * ratio for k, v in u["train_step"].items()}
out["train_step"]["erm"], out["train_step"]["mixup"] = 161 / 97, 180 / 97
out["train_setup"] = {k: v * ratio for k, v in u["train_setup"].items()}
out["forward"], out["attack_step"], out["startup"] = u["forward"] * ratio, u["attack_step"] * ratio, u["startup"] * ratio
for key in ("defense", "defense_grad"):
    out[key] = {d: {k: v * ratio for k, v in c.items()} for d, c in u[key].items()}
avx2["units"]["cifar10"] = out
avx2["machine"]["cpu"] = "issue 34's AVX2-only AMD EPYC (Zen 3), derived"
json.dump(avx2, open("zen3-units.json (then --units zen3-units.json)", "w"), indent=1)
