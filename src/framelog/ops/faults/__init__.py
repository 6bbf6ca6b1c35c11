"""The fault suite: the whole system under load while its processes are killed -9 and restarted.

``framelog faults run`` (cli/ops.py) starts a load generator (uploads and
playback events through the API, with its own ledger of what the API
acknowledged), kills -9 and restarts the stack's processes on a schedule (one
at a time, then two together), then checks that nothing acknowledged was lost
or counted twice and that every consumer group caught up. Modules:

* schedule.py: which targets go down when (pure);
* targets.py: how each target is killed, restarted and known healthy;
* load.py: the load generator and its ledger;
* checks.py: the end-of-run verdicts;
* report.py: the Markdown report and the SVG timeline;
* run.py: the orchestration.
"""
