rule submit_job:
    """Submit one run exactly once and write its marker.

    ancient() and `rerun-triggers: mtime` (profiles/default) keep Snakemake from re-planning
    a marker when code, params or upstream files change; the ledger catches everything else
    (-F, --rerun-incomplete, a deleted .snakemake/) and rewrites the marker without submitting.
    """
    input:
        isa=ancient(get_isa),
        info=ancient(get_isa_info),
    output:
        marker=f"{R}/submitted/{{exp}}/{{run}}.json",
    params:
        spec=get_spec,
    resources:
        ibm_api=1,
    log:
        "logs/submit/{exp}/{run}.log",
    conda:
        "../../envs/qpuflow.yaml"
    script:
        "../scripts/submit_job.py"
