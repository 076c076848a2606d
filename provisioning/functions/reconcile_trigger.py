"""Reconciliation timer: outcomes, retries, releases, sweep, job health, drift (see
provisioning/reconcile.py). The schedule is the app setting PROVISIONING_RECONCILE_SCHEDULE."""

from __future__ import annotations

import logging

import azure.functions as func

from ..errors import ConfigurationError
from ..reconcile.reconciler import Reconciler
from .services import open_services, sender_settings

log = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.function_name("reconcile")
@bp.timer_trigger(
    arg_name="timer",
    schedule="%PROVISIONING_RECONCILE_SCHEDULE%",
    # Never on startup: every deployment and scale-out would start an extra pass.
    run_on_startup=False,
    # The schedule monitor records the last run, so a schedule missed while the app was down
    # fires once as past_due (a pass does whatever is waiting, so once is enough).
    use_monitor=True,
)
async def reconcile(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("reconcile: the schedule was missed; this pass catches up")
    try:
        settings = sender_settings()
    except ConfigurationError as exc:
        # Not raised: the next pass (the schedule) finds everything where this one left it.
        log.error("reconcile pass skipped: configuration error: %s", exc)
        return
    async with open_services(settings) as (store, graph):
        report = await Reconciler(settings, store, graph).run()
    log.info("reconcile pass %s: %s", report.get("pass"), report.get("status"))
