# Answer extraction and scoring per backbone x variant x task.


rule score:
    input:
        f"{R}/generations/{{backbone}}/{{variant}}/{{task}}.parquet",
    output:
        f"{R}/scores/{{backbone}}/{{variant}}/{{task}}.parquet",
    log:
        f"{R}/logs/score/{{backbone}}/{{variant}}/{{task}}.log",
    group:
        "eval"
    conda:
        "../envs/data.yaml"
    resources:
        **cluster_resources("small"),
    params:
        sandbox=config["scoring"]["sandbox"],
    shell:
        "python -m codeift score --generations {input} --out {output}"
        " --sandbox {params.sandbox} > {log} 2>&1"
