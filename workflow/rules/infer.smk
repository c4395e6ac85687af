# Zero-shot generation per backbone x variant x task (vLLM offline, greedy; hf as a fallback).


rule generate:
    input:
        model=model_dir,
        task=f"{R}/{TASK}",
    output:
        f"{R}/{GENERATIONS}",
    log:
        f"{R}/{LOGS['generate']}",
    # One model's jobs back to back: its shared engine loads once (speed only, not outputs).
    priority: generation_priority
    # One cluster submission per model (backbone x variant): its jobs run one after another in
    # one GPU allocation (grouped_resources), and the model's first job generates its other
    # tasks ahead (infer.generate), so its engine loads once. The profile joins a model's jobs
    # with `group-components`.
    group:
        GENERATE_GROUP
    conda:
        "../envs/infer.yaml"
    threads: generate_threads()
    # A model's engine generates one batch at a time: `--resources engine_slots=1` keeps a
    # second generation job from holding a core while it waits (make run-real).
    resources:
        **grouped_resources("generate"),
        engine_slots=1,
    params:
        backbone=backbone_identity_json,
        settings=inference_settings_json,
    shell:
        "python -m codeift generate --model {input.model:q} --task-file {input.task:q}"
        " --out {output:q} --backbone {params.backbone:q} --variant {wildcards.variant:q}"
        " --settings {params.settings:q} --engines {ENGINES_JSON:q}"
        " --planned-tasks {PLANNED_TASKS:q} 2>&1 | tee {log:q}"
