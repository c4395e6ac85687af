# One test set per task, from the task catalogue (offline generator or hub loader).


rule build_task:
    output:
        f"{R}/{TASK}",
    log:
        f"{R}/{LOGS['build_task']}",
    priority: INPUT_PRIORITY
    group:
        "tasks"
    conda:
        "../envs/data.yaml"
    resources:
        **grouped_resources("small"),
    params:
        entry=task_entry_json,
        seed=task_seed,
    shell:
        "python -m codeift build-task --name {wildcards.task:q} --entry {params.entry:q}"
        " --seed {params.seed:q} --out {output:q} > {log:q} 2>&1"
