"""``enasa simulate``: what a plan costs, operator by operator, and what it computes.

- :mod:`.cost`: the cost report (makespan, energy with leakage, utilization, chip
  figures, per subnet), as ``simulate`` prints it and the HTML report embeds it;
- :mod:`.breakdown`: energy by component and the per-operator (per-layer) table;
- :mod:`.execute`: the plan run numerically through its tiles, each subnet compared
  with onnxruntime.

The modules are imported on use: the cost report does not need onnxruntime.
"""
