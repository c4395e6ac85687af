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
        summary=f"{R}/{SUMMARY_DIR}/{SUMMARY_FILE}",
    log:
        f"{R}/{LOGS['aggregate']}",
    conda:
        "../envs/report.yaml"
    resources:
        **cluster_resources("small"),
    params:
        # The folders of the outputs, read from them (not rebuilt from R): right wherever the
        # executor stages the outputs (snakemake --lint).
        outdir=lambda wildcards, output: os.path.dirname(output.summary),
        figdir=lambda wildcards, output: os.path.dirname(getattr(output, FIGURES[0])),
        analysis=as_json(config.get("analysis", {})),
        controls=as_json(config.get("controls", {})),
    shell:
        "python -m codeift aggregate --scores {input.scores:q} --cards {input.cards:q} --outdir {params.outdir:q} --figdir {params.figdir:q}"
        " --analysis {params.analysis:q} --controls {params.controls:q} > {log:q} 2>&1"
