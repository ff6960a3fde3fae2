"""The reporting layer: what a finished run's artifacts say.

`aggregate` reads every evaluation artifact into results.csv (and the detection and component
tables), `findings` turns it into the paired differences of the paper's claims, `tables` and
`plots` rebuild the paper's Tables 2/3 and Figs. 2-4 (and draw Fig. 5, the robustness evaluation's
convergence), `study` reports the training study, and `provenance` records what was run, where
and how long it took.

May import: `core`, `design`, `jobs` and `report`.
"""
