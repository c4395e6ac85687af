# IFT sources -> cleaned, labelled pool (one per study, shared by every backbone) -> one mix per
# arm (proportion, and replicate seed where asked).


rule build_pool:
    output:
        pool=f"{R}/{POOL}",
        report=f"{R}/{POOL_REPORT}",
    log:
        f"{R}/{LOGS['build_pool']}",
    priority: INPUT_PRIORITY
    conda:
        "../envs/data.yaml"
    resources:
        **cluster_resources("build_pool"),
    params:
        sources=ift_json("sources"),
        cleaning=ift_json("cleaning"),
        labeller=ift_json("labeller"),
        seed=config["ift"]["seed"],
    shell:
        "python -m codeift build-pool --sources {params.sources:q} --seed {params.seed:q}"
        " --cleaning {params.cleaning:q} --labeller {params.labeller:q}"
        " --out {output.pool:q} --report {output.report:q} > {log:q} 2>&1"


rule build_mix:
    input:
        pool=rules.build_pool.output.pool,
        report=rules.build_pool.output.report,
    output:
        mix=f"{R}/{MIX}",
        card=f"{R}/{MIX_CARD}",
    log:
        f"{R}/{LOGS['build_mix']}",
    priority: INPUT_PRIORITY
    # Seconds each: the profile packs them into one cluster job (group-components).
    group:
        "mixes"
    conda:
        "../envs/data.yaml"
    resources:
        **grouped_resources("small"),
    params:
        proportion=arm_proportion,
        replicate=arm_replicate,
        total=config["ift"]["total"],
        seed=config["ift"]["seed"],
        mix=ift_json("mix"),
    shell:
        "python -m codeift build-mix --pool {input.pool:q} --pool-report {input.report:q}"
        " --proportion {params.proportion:q} --replicate {params.replicate:q}"
        " --total {params.total:q} --seed {params.seed:q}"
        " --mix {params.mix:q} --out {output.mix:q} --card {output.card:q} > {log:q} 2>&1"
