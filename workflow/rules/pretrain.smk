# The pretrained tiny bases shipped in src/codeift/assets/tiny_bases/ (not part of `all`: the
# embedded default uses the shipped checkpoints). Rebuild them from their recipes with
#   snakemake --cores 2 --forcerun pretrain_tiny_base -- src/codeift/assets/tiny_bases/{llama,qwen2}


rule pretrain_tiny_base:
    output:
        directory("src/codeift/assets/tiny_bases/{architecture}"),
    log:
        f"{R}/logs/pretrain/{{architecture}}.log",
    wildcard_constraints:
        architecture="llama|qwen2",
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        **cluster_resources("pretrain"),
    shell:
        "python -m codeift pretrain --architecture {wildcards.architecture} --out {output}"
        " 2>&1 | tee {log}"
