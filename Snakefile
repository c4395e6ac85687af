# codeift: what does the coding share of instruction-tuning data do to an LLM's reasoning?
# Data flow: README.md; layout: docs/design.md. Every rule calls one `python -m codeift <stage>`
# entry point.

from snakemake.utils import min_version

min_version("9.0")


# The embedded default, unless the command line names its own config (`--configfile X`
# then replaces it instead of being merged into it: a merged study would keep the tiny backbones).
if not workflow.overwrite_configfiles:
    workflow.configfile(f"{workflow.basedir}/config/config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tasks.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/analysis.smk"


rule all:
    default_target: True
    input:
        summary_targets(),


onsuccess:
    shell("python -m codeift engines stop >/dev/null 2>&1 || true")


onerror:
    shell("python -m codeift engines stop >/dev/null 2>&1 || true")
