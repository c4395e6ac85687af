# All scores -> the result, evidence and mix tables (CSV + Markdown), a Markdown summary and the
# figures, as listed in codeift.study.OUTPUTS; `snakemake --report` gathers the figures (with
# their captions) into one HTML file.


rule aggregate:
    input:
        scores=score_targets(),
        cards=card_targets(),
    output:
        **figure_reports(),
        tables=output_files("table"),
        summary=f"{R}/summary/{SUMMARY_FILE}",
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
