rule pending_transpiled:
    """All pending runs transpiled: one file listing them, so that budget_check has one input.

    (Snakemake checks each consumer of a job's output against that job's whole input list: N
    submit jobs on a budget_check with N inputs made planning O(N^2); see bench/RESULTS.md.)
    """
    input:
        get_pending_isa_infos,
    output:
        temp(f"{R}/ledger/pending_transpiled.txt"),
    log:
        "logs/submit/pending_transpiled.log",
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

    `rerun-triggers: mtime` (profiles/default) and having no per-run input keep Snakemake from
    re-planning a marker when code, params or upstream files change; only pending runs wait
    for the budget check, so a new check never drags submitted runs back into the DAG; the ledger catches everything else
    (-F, --rerun-incomplete, a deleted .snakemake/) and rewrites the marker without submitting.
    The arms of a deployment session go in their recorded random order (`after`).
    """
    input:
        budget=get_budget_flag,
        after=ancient(get_preceding_marker),
    output:
        marker=f"{R}/submitted/{{exp}}/{{run}}.json",
    params:
        spec=get_spec,
        # Not inputs: the budget check already depends on every pending run's ISA files, and
        # one input shared by all submit jobs keeps Snakemake's per-round stat of ready jobs'
        # inputs O(1) instead of O(N).
        isa=get_isa,
        info=get_isa_info,
    resources:
        ibm_api=1,
    log:
        "logs/submit/{exp}/{run}.log",
    # Talks to the provider with the user's account: never on a cluster node.
    localrule: True
    run:
        step("submit", input, output, params, wildcards, log)
