"""Every side effect of a job: upstream calls, prices, cost and event rows."""
