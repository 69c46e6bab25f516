r"""The experiment application, built on the PyG components of
:mod:`pyg_brmrs`: named recipes (:mod:`~pyg_brmrs.app.recipes`), run
folders (:mod:`~pyg_brmrs.app.run_folder`), runs and grids end to end
(:mod:`~pyg_brmrs.app.experiment`), tables (:mod:`~pyg_brmrs.app.report`),
plots (:mod:`~pyg_brmrs.app.plotting`) and the ``pyg-brmrs`` command
(:mod:`~pyg_brmrs.app.cli`). Nothing in the components imports it."""
