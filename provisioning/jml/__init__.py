"""Joiners, movers and leavers: the planner (pure), the plan and send passes of a file, and the
worker state it plans against."""
