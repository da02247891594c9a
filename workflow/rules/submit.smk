rule pending_transpiled:
    """All pending runs transpiled: one file listing them, so that budget_check has one input.

    (Snakemake checks each consumer of a job's output against that job's whole input list: N
    submit jobs on a budget_check with N inputs made planning O(N^2); see bench/RESULTS.md.)
    """
    input:
        get_pending_isa_infos,
    output:
        temp(f"{R}/ledger/pending_transpiled.txt"),
    localrule: True
    run:
        Path(output[0]).write_text("".join(f"{path}\n" for path in input))


rule budget_check:
    """Refuse the whole batch before the first job is sent if the accounts cannot pay for it.

    temp(): the flag is gone after each run, so new pending runs are always checked again.
    """
    input:
        f"{R}/ledger/pending_transpiled.txt",
    output:
        flag=temp(f"{R}/ledger/budget_checked.flag"),
    params:
        specs=get_pending_specs,
    log:
        "logs/submit/budget_check.log",
    localrule: True
    run:
        step("budget_check", input, output, params, wildcards, log)


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
    # Talks to the provider with the user's account: never on a cluster node.
    localrule: True
    run:
        step("submit", input, output, params, wildcards, log)
