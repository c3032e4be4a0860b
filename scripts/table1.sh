#!/usr/bin/env bash
# Table 1 of Milde & Biemann (2015) on the demo corpus, every row over seeds at the measured budget, then the report
# (paper column, mean +/- std over seeds x folds, paired tests, learning curves). docs/table1.md has the results.
#
#   scripts/table1.sh            # everything: rows, the two augmentations, the report
#   scripts/table1.sh rows       # the Table 1 rows only (ROWS=net4,net5 scripts/table1.sh rows: some of them);
#                                # net2 is not trained: it is net3's networks under the majority vote, and
#                                # `paraling report` scores it from net3's runs (paraling/pipeline/vote_rows.py)
#   scripts/table1.sh augment    # net3 + SpecAugment, net3 + mixup (not in the paper)
#   scripts/table1.sh report     # the report of what is tracked so far
#
# Environment: EXPERIMENT (MLflow experiment, default table1_seeds), SEEDS (default 0,1,2), ROWS, EPOCHS, and
# MLFLOW_TRACKING_URI (default sqlite:///mlruns/mlflow.db). Every run uses one CPU thread, so two invocations with
# different parts can share a 2-core machine. Runs already finished are not skipped: rerunning adds newer runs, and
# the report takes the newest run of each name and seed.
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:-all}
exp=${EXPERIMENT:-table1_seeds}
seeds=${SEEDS:-0,1,2}
rows=${ROWS:-svm,rf,net0,net1,net3,net4,net5}  # net2: net3's networks under the majority vote (the report)
paraling=(scripts/run paraling)
# The budget: at most EPOCHS (default 200) epochs, early stopping after 25 epochs without a better validation UAR on
# the held-out speakers of each training fold; the paper's 3 conv blocks at reduced width, 30000 windows per epoch.
common=(
  corpus=demo "seed=$seeds" "trainer.epochs=${EPOCHS:-200}" trainer.patience=25 trainer.threads=1 progress=never
  trainer.max_windows_per_epoch=30000 "tracking.experiment=$exp"
  'transfer.pretrain_overrides=["experiment=pretrain_langid","trainer.epochs=40"]'
)
# The CNN rows' own keys (a model's node holds only its kind's keys: the baselines' multirun gets none of them).
cnn=('model.channels=[16,32,64]' 'model.fc_sizes=[256,256]')
baselines=$(tr , '\n' <<<"$rows" | grep -xE 'svm|rf|net0' | paste -sd, -) || true
cnn_rows=$(tr , '\n' <<<"$rows" | grep -vxE 'svm|rf|net0' | paste -sd, -) || true
case $part in
  rows | all)
    [ -z "$baselines" ] || "${paraling[@]}" train -m "experiment=$baselines" "${common[@]}"
    [ -z "$cnn_rows" ] || "${paraling[@]}" train -m "experiment=$cnn_rows" "${common[@]}" "${cnn[@]}"
    ;;&
  augment | all)
    "${paraling[@]}" train -m experiment=net3 name=net3_specaug trainer.spec_augment.freq_masks=1 \
      trainer.spec_augment.time_masks=1 'tracking.tags={paraling.description:"net3 + SpecAugment (1 freq, 1 time mask)"}' \
      "${common[@]}" "${cnn[@]}"
    "${paraling[@]}" train -m experiment=net3 name=net3_mixup trainer.mixup=0.2 \
      'tracking.tags={paraling.description:"net3 + mixup, Beta(0.2, 0.2)"}' "${common[@]}" "${cnn[@]}"
    ;;&
  report | all) "${paraling[@]}" report --experiment "$exp" ;;
  rows | augment) ;;
  *) echo "usage: scripts/table1.sh [all|rows|augment|report]" >&2; exit 2 ;;
esac
