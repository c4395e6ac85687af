# All scores -> overall, domain and task tables (CSV + Markdown), the evidence tables
# (intervals, paired comparisons, consistency, best proportion, reasoning modes, seeds,
# controls),
# a Markdown summary and figures; `snakemake --report` gathers the figures into one HTML file.


rule aggregate:
    input:
        scores=score_targets(),
        cards=card_targets(),
    output:
        tables=expand(
            f"{R}/summary/{{view}}.{{ext}}",
            view=SUMMARY_TABLES,
            ext=["csv", "md"],
        ),
        summary=f"{R}/summary/summary.md",
        overall=report(
            f"{R}/figures/overall.png",
            caption="../report/overall.rst",
            category="Figures",
        ),
        domain=report(
            f"{R}/figures/domain.png",
            caption="../report/domain.rst",
            category="Figures",
        ),
        task=report(
            f"{R}/figures/task.png", caption="../report/task.rst", category="Figures"
        ),
        reasoning_mode=report(
            f"{R}/figures/reasoning_mode.png",
            caption="../report/reasoning_mode.rst",
            category="Figures",
        ),
        controls=report(
            f"{R}/figures/controls.png",
            caption="../report/controls.rst",
            category="Figures",
        ),
    log:
        f"{R}/logs/aggregate.log",
    conda:
        "../envs/report.yaml"
    resources:
        **cluster_resources("small"),
    params:
        outdir=f"{R}/summary",
        figdir=f"{R}/figures",
        analysis=as_json(config.get("analysis", {})),
        controls=as_json(config.get("controls", {})),
    shell:
        "python -m codeift aggregate --scores {input.scores} --cards {input.cards} --outdir {params.outdir} --figdir {params.figdir}"
        " --analysis {params.analysis:q} --controls {params.controls:q} > {log} 2>&1"
