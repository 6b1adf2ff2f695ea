# Roots of the real speech corpora, one variable per corpus (ESPnet's db.sh convention).
# Download a corpus yourself (see README, "Real corpora"), then point its variable at the
# folder described below -- here, or in the environment (COMMONVOICE=/data/cv ./run.sh ...).
# Stage 1 with --corpus <name> or --corpus mix (conf/data/<lang>.yaml) reads them; a
# corpus that is selected but not set here stops the stage with an error naming it.
#
#   COMMONVOICE  the cv-corpus-<version> folder holding <locale>/ (hi, it, pa-IN, te, ...)
#   MLS          the folder holding mls_<language>/ or mls_<language>_opus/ (mls_italian)
#   KATHBATH     the folder holding <language>/ (hindi, punjabi, telugu, ...) with
#                train/ valid/ test_known/ test_unknown/
#   INDICVOICES  the folder holding <Language>/<version>/{train,valid}/ (Hindi, Punjabi, Telugu)
#   FLEURS       the folder holding <locale>/ (hi_in, it_it, pa_in, te_in) with *.tsv and audio/
COMMONVOICE=${COMMONVOICE:-}
MLS=${MLS:-}
KATHBATH=${KATHBATH:-}
INDICVOICES=${INDICVOICES:-}
FLEURS=${FLEURS:-}
export COMMONVOICE MLS KATHBATH INDICVOICES FLEURS
