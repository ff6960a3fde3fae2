# Mixup Inference (Pang, Xu, Zhu, ICLR 2020): reproduction workflow, run in place from a clone.
#   snakemake --cores all                                  # default preset (config/config.yaml)
#   snakemake --cores all --configfile config/smoke.yaml   # two-minute smoke run
#   snakemake --report reports/<run>/report.html           # then open the report
# The workflow itself is workflow/Snakefile, in the catalogue's layout. This file uses it as a module,
# the way a deployment into a user's own project does (README "Deploy into your own project"), so a
# run in place and a deployed run take the same paths. (An `include:` would not do: Snakemake keeps
# the including file's default target, so `all` would not run by default.)

from snakemake.utils import min_version

min_version("9.0")


# The default preset only when no --configfile is given: Snakemake would otherwise merge a user's
# config file over it, so a key missing from theirs would silently take the default's value.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


module mixup_inference:
    snakefile:
        "workflow/Snakefile"
    config:
        config


use rule * from mixup_inference
