rule budget_check:
    """Refuse the whole batch before the first job is sent if the accounts cannot pay for it.

    temp(): the flag is gone after each run, so new pending runs are always checked again.
    """
    input:
        get_pending_isa_infos,
    output:
        flag=temp(f"{R}/ledger/budget_checked.flag"),
    params:
        specs=get_pending_specs,
    log:
        "logs/submit/budget_check.log",
    localrule: True
    conda:
        "../../envs/qpuflow.yaml"
    script:
        "../scripts/budget_check.py"


rule submit_job:
    """Submit one run exactly once and write its marker.

    ancient() and `rerun-triggers: mtime` (profiles/default) keep Snakemake from re-planning
    a marker when code, params or upstream files change; only pending runs wait for the
    budget check, so a new check never drags submitted runs back into the DAG; the ledger catches everything else
    (-F, --rerun-incomplete, a deleted .snakemake/) and rewrites the marker without submitting.
    The arms of a deployment session go in their recorded random order (`after`).
    """
    input:
        isa=ancient(get_isa),
        info=ancient(get_isa_info),
        budget=get_budget_flag,
        after=ancient(get_preceding_marker),
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
