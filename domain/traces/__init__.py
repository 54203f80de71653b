"""A job's trace read back from its workflow history: history JSON helpers, span builder, tree and costs."""
