"""The course's tooling, apart from the library the lessons import.

`helpers` (one level up) is what a lesson uses: data, augmentations, loaders, models, the training loop,
losses, metrics, maps, plots. This package is how the course itself is run, measured and taught, and
no module of the lessons' library imports it:

  cli        the `course` command: run the notebooks at a profile, store a run, print or write results
  notebooks  the notebooks as files: finding them, their code's fingerprint, their Colab links
  store      a small-profile run kept in the notebooks, its records under notebooks/results/
  results    the records every notebook writes (`record`) and their tables
  pages      the pages generated from the records and the notebooks: RESULTS.md, the exercise table
  budget     what a profile costs on a T4 (FLOPs counted by torch) and on the device at hand
  rehearse   the full profile with its counts cut, its memory and time per cell
  grading    student versions and grading in nbgrader's format (the `instructor` extra)
"""
