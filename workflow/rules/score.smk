# Answer extraction and scoring per backbone x variant x task.


rule score:
    input:
        f"{R}/{GENERATIONS}",
    output:
        f"{R}/{SCORES}",
    log:
        f"{R}/{LOGS['score']}",
    # CPU only, apart from generation: a model's scoring is one CPU submission, and no GPU
    # waits while model-written programs run in the jail.
    group:
        SCORE_GROUP
    conda:
        "../envs/data.yaml"
    resources:
        **grouped_resources("small"),
    params:
        sandbox=config["scoring"]["sandbox"],
    shell:
        "python -m codeift score --generations {input:q} --out {output:q}"
        " --sandbox {params.sandbox:q} > {log:q} 2>&1"
