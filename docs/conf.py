"""Sphinx configuration for the lowrank_core documentation.

Build (warnings are errors, as in CI)::

    pip install ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

The API reference is generated from the numpydoc docstrings of the installed package, so
install it first (``pip install .`` or the editable install).
"""

import lowrank_core

project = "lowrank_core"
author = "lowrank_core developers"
copyright = "2026, lowrank_core developers"
release = lowrank_core.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "figures/*.csv"]
root_doc = "index"

# --- API reference: autosummary stubs for the public names of ``lowrank_core`` ---------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"  # numpydoc's Parameters sections state the types
# The public names live at the top level (``lowrank_core.solve``); the modules that define
# them are private and are being reorganized, so never show them.
add_module_names = True
python_display_short_literal_types = True

# numpydoc: the class pages list their methods themselves (autosummary template), so
# numpydoc does not add its own member tables (which would need stubs per method).
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False


# --- HTML --------------------------------------------------------------------------------
html_theme = "alabaster"
html_static_path = []
html_title = f"lowrank_core {release}"
html_theme_options = {
    "description": "Low-rank matrix recovery on a compiled core",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "body_max_width": "auto",
}
