# Mixup Inference (Pang, Xu, Zhu, ICLR 2020): reproduction workflow.
#   snakemake --cores all                                  # default preset (config/config.yaml)
#   snakemake --cores all --configfile config/smoke.yaml   # two-minute smoke run
#   snakemake --report reports/<run>/report.html           # then open the report
# The stages: prepare data -> train per regime -> attack -> evaluate defenses -> aggregate -> report.

from snakemake.utils import min_version

min_version("9.0")


# The default preset only when no --configfile is given: Snakemake would otherwise merge a user's
# config file over it, so a key missing from theirs would silently take the default's value.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/attack.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/robust.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/bench.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
