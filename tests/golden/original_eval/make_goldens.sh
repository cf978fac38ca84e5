#!/usr/bin/env bash
# Train tiny models with the ORIGINAL facebookresearch/XLM train.py on CPU and keep what its evaluator logged.
# Usage: XLM_ORIGINAL=/tmp/xlm-orig RUN_ORIGINAL_CPU=$PWD/run_original_cpu.py bash make_goldens.sh TEXT_DIR WORK_DIR OUT_DIR
# TEXT_DIR: BPE text valid/test {en,fr,en-fr.en,en-fr.fr} + vocab (tests/golden/original_eval/data), absolute path.
# The original seeds nothing: every run trains different models, each logged with its own figures.
set -euo pipefail
TEXT=$1; WORK=$2; OUT=$3
mkdir -p "$WORK/data" "$OUT"
# binarize with the original preprocess.py; the training split is a copy of valid (only evaluation matters here);
# zz is a copy of fr (a language code outside the original's hard-coded evaluation list)
for split in valid test; do
  for f in en fr en-fr.en en-fr.fr; do
    cp "$TEXT/$split.$f" "$WORK/data/$split.$f"
    (cd "$XLM_ORIGINAL" && python preprocess.py "$TEXT/vocab" "$WORK/data/$split.$f" > /dev/null)
  done
  cp "$WORK/data/$split.fr.pth" "$WORK/data/$split.zz.pth"
done
for f in en fr zz en-fr.en en-fr.fr; do cp "$WORK/data/valid.$f.pth" "$WORK/data/train.$f.pth"; done

run() {  # NAME VALIDATION_METRIC ARGS...  (ONLY="a b": make only those)
  local name=$1 metric=$2; shift 2
  if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then return 0; fi
  python "$RUN_ORIGINAL_CPU" --exp_name golden --exp_id "$name" --dump_path "$WORK/dump" --data_path "$WORK/data" \
    --n_layers 2 --n_heads 4 --dropout 0.1 --attention_dropout 0.1 --gelu_activation true \
    --optimizer 'adam_inverse_sqrt,lr=0.002,warmup_updates=10' --max_epoch 1 \
    --validation_metrics "$metric" "$@" > "$WORK/$name.out" 2>&1
  grep -o '__log__:.*' "$WORK/dump/golden/$name/train.log" | sed 's/^__log__://' > "$OUT/$name.jsonl"
  cp "$WORK/dump/golden/$name/best-${metric#_}.pth" "$OUT/$name.pth"
  echo "$name: $(wc -c < "$OUT/$name.pth") bytes"
}
# B: CLM on en, fr streams and en-fr pairs (pairs with reset positions in evaluation)
run clm_en_fr _valid_clm_ppl --lgs en-fr --clm_steps 'en,fr,en-fr' --mlm_steps '' --emb_dim 16 \
  --bptt 32 --batch_size 6 --tokens_per_batch -1 --epoch_size 600
# C: CLM + MLM, TLM given as fr-en (batches reversed), word_pred 0.2, odd batch size, trimmed vocabulary
run clm_mlm_mix _valid_mlm_ppl --lgs en-fr --clm_steps 'fr,en-fr' --mlm_steps 'en,fr-en' --emb_dim 16 \
  --bptt 24 --batch_size 5 --tokens_per_batch -1 --word_pred 0.2 --max_vocab 2000 --epoch_size 600
# D: 6 languages (the original subsamples streams: 5 on valid, 10 on test), MLM en, CLM fr
run six_langs _valid_mlm_ppl --lgs 'ar-de-en-es-fr-ru' --clm_steps 'fr' --mlm_steps 'en' --emb_dim 16 \
  --bptt 16 --batch_size 8 --epoch_size 3200
# E: 31 languages (subsample 5 on valid for listed languages, 10 for the others and on test), MLM en and zz
run many_langs _valid_mlm_ppl --lgs 'ab-ar-ay-bg-bug-de-el-en-es-fr-ha-hi-ko-ln-min-nds-pap-pt-ru-sw-tg-th-to-tr-udm-uk-ur-vi-zh-zh_classical-zz' \
  --clm_steps '' --mlm_steps 'en,zz' --emb_dim 16 --use_lang_emb false --bptt 16 --batch_size 8 --epoch_size 3200
