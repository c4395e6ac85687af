# All scores -> overall, domain and task tables (CSV + Markdown), a summary and figures.


rule aggregate:
    input:
        score_targets(),
    output:
        tables=expand(
            f"{R}/summary/{{view}}.{{ext}}",
            view=["overall", "domain", "task"],
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
    log:
        f"{R}/logs/aggregate.log",
    conda:
        "../envs/report.yaml"
    params:
        outdir=f"{R}/summary",
        figdir=f"{R}/figures",
    shell:
        "python -m codeift aggregate --scores {input} --outdir {params.outdir} --figdir {params.figdir}"
        " > {log} 2>&1"
