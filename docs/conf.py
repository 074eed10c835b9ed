# Sphinx configuration for the tiering.pmem docsite (built by tests/docs/build.sh, `make docs`).
# Started from `antsibull-docs sphinx-init` (antsibull-docs 2.28.0); changes: project names, and no
# intersphinx inventories (fetching them needs network access the build must not depend on).

project = 'tiering.pmem'
copyright = 'tiering.pmem developers'
title = 'tiering.pmem collection documentation'
html_short_title = 'tiering.pmem docs'

extensions = ['sphinx.ext.autodoc', 'sphinx_antsibull_ext']

pygments_style = 'ansible'
highlight_language = 'YAML+Jinja'

html_theme = 'sphinx_ansible_theme'
html_show_sphinx = False
display_version = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False

default_role = 'any'
# Every cross-reference must resolve; with -W an unresolved one fails the build.
nitpicky = True
