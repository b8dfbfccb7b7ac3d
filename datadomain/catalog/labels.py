"""The feature catalog's labels, named here so that the message catalogue keeps their translations.

The labels themselves live in the catalog's YAML files, which are data: editing them changes the catalog
version and recomputes every stored vector, so translations cannot go there. Pages translate a label at
display time (``datadomain.selectors.catalog_feature_labels``); ``makemessages`` finds the strings here.
A test checks that this list and the YAML files name the same labels.
"""

from __future__ import annotations

from django.utils.translation import gettext_noop

LABELS = (
    gettext_noop("Myocardial infarction"),
    gettext_noop("Congestive heart failure"),
    gettext_noop("Peripheral vascular disease"),
    gettext_noop("Cerebrovascular disease"),
    gettext_noop("Dementia"),
    gettext_noop("Chronic pulmonary disease"),
    gettext_noop("Rheumatic disease"),
    gettext_noop("Peptic ulcer disease"),
    gettext_noop("Mild liver disease"),
    gettext_noop("Diabetes without chronic complication"),
    gettext_noop("Diabetes with chronic complication"),
    gettext_noop("Hemiplegia or paraplegia"),
    gettext_noop("Renal disease"),
    gettext_noop("Any malignancy, including lymphoma and leukaemia, except malignant neoplasm of skin"),
    gettext_noop("Moderate or severe liver disease"),
    gettext_noop("Metastatic solid tumour"),
    gettext_noop("AIDS/HIV"),
    gettext_noop("Cardiac arrhythmias"),
    gettext_noop("Valvular disease"),
    gettext_noop("Pulmonary circulation disorders"),
    gettext_noop("Peripheral vascular disorders"),
    gettext_noop("Hypertension, uncomplicated"),
    gettext_noop("Hypertension, complicated"),
    gettext_noop("Paralysis"),
    gettext_noop("Other neurological disorders"),
    gettext_noop("Diabetes, uncomplicated"),
    gettext_noop("Diabetes, complicated"),
    gettext_noop("Hypothyroidism"),
    gettext_noop("Renal failure"),
    gettext_noop("Liver disease"),
    gettext_noop("Peptic ulcer disease excluding bleeding"),
    gettext_noop("Lymphoma"),
    gettext_noop("Metastatic cancer"),
    gettext_noop("Solid tumour without metastasis"),
    gettext_noop("Rheumatoid arthritis/collagen vascular diseases"),
    gettext_noop("Coagulopathy"),
    gettext_noop("Obesity"),
    gettext_noop("Weight loss"),
    gettext_noop("Fluid and electrolyte disorders"),
    gettext_noop("Blood loss anaemia"),
    gettext_noop("Deficiency anaemia"),
    gettext_noop("Alcohol abuse"),
    gettext_noop("Drug abuse"),
    gettext_noop("Psychoses"),
    gettext_noop("Depression"),
    gettext_noop("Age in whole years on the as-of date"),
    gettext_noop("Age points of the age-adjusted Charlson index"),
    gettext_noop("Inpatient admissions starting in the 12 months up to the as-of date"),
    gettext_noop("Emergency visits in the 12 months up to the as-of date"),
    gettext_noop("Latest HbA1c within 24 months is at least 6.5 %"),
    gettext_noop("Latest HbA1c within 24 months is at least 8.0 %"),
    gettext_noop("Latest BMI within 24 months is below 18.5 kg/m2"),
    gettext_noop("Latest BMI within 24 months is at least 30 kg/m2"),
    gettext_noop("Latest BMI within 24 months is at least 35 kg/m2"),
    gettext_noop("Latest BMI within 24 months is at least 40 kg/m2"),
    gettext_noop("Latest systolic blood pressure within 12 months is at least 140 mmHg"),
    gettext_noop("Latest systolic blood pressure within 12 months is at least 160 mmHg"),
)
