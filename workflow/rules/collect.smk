rule collect_result:
    """Download one finished job's result (or record its failure), once.

    No file input on purpose: collection must never make Snakemake build or submit anything.
    The collect target asks for this output only for markers whose job is final.
    """
    output:
        result=f"{R}/collected/{{exp}}/{{run}}.json",
    params:
        marker=f"{R}/submitted/{{exp}}/{{run}}.json",
    resources:
        ibm_api=1,
    log:
        "logs/collect/{exp}/{run}.log",
    conda:
        "../../envs/qpuflow.yaml"
    script:
        "../scripts/collect_result.py"


rule collect:
    """Status of every submitted job, results of the finished ones, and a summary table."""
    input:
        get_collect_targets,
    params:
        rows=get_collect_rows,
    log:
        "logs/collect/summary.log",
    localrule: True
    conda:
        "../../envs/qpuflow.yaml"
    script:
        "../scripts/collect_summary.py"
