"""Jobs: the job service and the ports it needs, the event sink, recovery, the sweeper, dead-letter replay."""
