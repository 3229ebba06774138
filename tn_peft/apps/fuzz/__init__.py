"""Fuzzing of tn_peft's input surfaces: graph specs, checkpoint folders and the command line.

Each surface module has ``make(workdir) -> Surface``: a function from a case number to one input and
the call that feeds it to tn_peft. :func:`tn_peft.apps.fuzz.outcomes.run_cases` runs N cases, classifies
each outcome (accepted, a documented error by type, a crash, a hang) and saves the first input of
every crash class. ``tn-peft bench fuzz`` prints the counts.
"""
