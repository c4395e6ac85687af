# Backbone preparation (hub download, local folder, shipped pretrained tiny base, tiny build)
# and the pretraining of the shipped tiny bases (not part of `all`: the embedded default uses
# the shipped checkpoints). Rebuild them from their recipes with
#   snakemake --cores 2 --forcerun pretrain_tiny_base -- src/codeift/assets/tiny_bases/{llama,qwen2}


rule prepare_backbone:
    output:
        directory(f"{R}/{BASE_MODEL}"),
    log:
        f"{R}/{LOGS['prepare_backbone']}",
    priority: INPUT_PRIORITY
    conda:
        "../envs/train.yaml"
    resources:
        **cluster_resources("prepare"),
    params:
        spec=backbone_source_json,
    shell:
        "python -m codeift prepare-backbone --name {wildcards.backbone:q} --spec {params.spec:q}"
        " --out {output:q} > {log:q} 2>&1"


rule pretrain_tiny_base:
    output:
        directory("src/codeift/assets/tiny_bases/{architecture}"),
    log:
        f"{R}/{LOGS['pretrain']}",
    wildcard_constraints:
        architecture="llama|qwen2",
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        **cluster_resources("pretrain"),
    shell:
        "python -m codeift pretrain --architecture {wildcards.architecture:q} --out {output:q}"
        " 2>&1 | tee {log:q}"
