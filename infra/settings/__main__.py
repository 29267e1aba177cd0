"""python -m infra.settings: rewrite Pulumi.yaml's schema and the settings tables from the declarations."""

import os

from infra.settings.docs import write_documents

write_documents(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
