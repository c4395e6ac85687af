# SFT (TRL) per backbone x arm, resuming from the last checkpoint when rerun.


rule sft:
    input:
        model=f"{R}/{BASE_MODEL}",
        mix=f"{R}/{MIX}",
    output:
        directory(f"{R}/{TUNED_MODEL}"),
    log:
        f"{R}/{LOGS['sft']}",
    conda:
        "../envs/train.yaml"
    threads: sft_threads()
    resources:
        **cluster_resources("sft"),
    params:
        settings=train_settings_json,
        launch=train_launch_json,
        # Not an output: it survives a killed job so the rerun resumes from the last checkpoint.
        checkpoints=f"{R}/{CHECKPOINTS}",
    shell:
        "python -m codeift sft --model {input.model:q} --mix {input.mix:q} --out {output:q}"
        " --checkpoints {params.checkpoints:q} --settings {params.settings:q}"
        " --launch {params.launch:q} 2>&1 | tee {log:q}"
