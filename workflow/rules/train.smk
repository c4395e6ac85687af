# Backbone preparation (download, local folder or tiny build) and SFT per backbone x arm.


rule prepare_backbone:
    output:
        directory(f"{R}/models/{{backbone}}/base"),
    log:
        f"{R}/logs/prepare_backbone/{{backbone}}.log",
    priority: INPUT_PRIORITY
    conda:
        "../envs/train.yaml"
    resources:
        **cluster_resources("prepare"),
    params:
        spec=backbone_source_json,
    shell:
        "python -m codeift prepare-backbone --name {wildcards.backbone} --spec {params.spec:q}"
        " --out {output} > {log} 2>&1"


rule sft:
    input:
        model=f"{R}/models/{{backbone}}/base",
        mix=f"{R}/ift/mixes/{{arm}}.parquet",
    output:
        directory(f"{R}/models/{{backbone}}/{{arm}}"),
    log:
        f"{R}/logs/sft/{{backbone}}/{{arm}}.log",
    conda:
        "../envs/train.yaml"
    threads: train_threads
    resources:
        **cluster_resources("sft"),
    params:
        settings=train_settings_json,
        launch=train_launch_json,
        # Not an output: it survives a killed job so the rerun resumes from the last checkpoint.
        checkpoints=f"{R}/checkpoints/{{backbone}}/{{arm}}",
    shell:
        "python -m codeift train --model {input.model} --mix {input.mix} --out {output}"
        " --checkpoints {params.checkpoints} --settings {params.settings:q}"
        " --launch {params.launch:q} 2>&1 | tee {log}"
