"""Readers of the benchmarks' files (xlm.tasks.formats): small hand-written files in the real formats.

Every malformed case must be one XLMError line naming the file and the line.
"""

from __future__ import annotations

import json

import pytest

from xlm.errors import XLMError
from xlm.tasks.formats.bitext import read_aligned, read_bucc_gold, read_bucc_sentences
from xlm.tasks.formats.sentence import ReadStats, read_examples
from xlm.tasks.formats.squad import read_squad
from xlm.tasks.formats.tokens import read_conll, read_conllu

XNLI_HEADER = ("language\tgold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
               "sentence2_parse\tsentence1\tsentence2\tpromptID\tpairID\tgenre\tlabel1\tlabel2\tlabel3\tlabel4\t"
               "label5\tsentence1_tokenized\tsentence2_tokenized\tmatch")


def xnli_row(lang, label, s1, s2):
    return "\t".join([lang, label, "(", "(", "(", "(", s1, s2, "1", "2", "fiction", label, label, "", "", "",
                      s1, s2, "True"])


def one_line_error(excinfo, where):
    msg = str(excinfo.value)
    assert "\n" not in msg and where in msg, msg
    return msg


def test_xnli_dev_file_keeps_the_rows_of_the_language(tmp_path):
    path = tmp_path / "xnli.dev.tsv"
    path.write_text("\n".join([XNLI_HEADER, xnli_row("en", "neutral", "A man eats.", "He is hungry."),
                               xnli_row("fr", "entailment", "Un homme mange.", "Il mange."),
                               xnli_row("en", "contradiction", "It rains.", "It is dry.")]) + "\n", "utf-8")
    en = read_examples("xnli", path, "en")
    assert [(e.text_a, e.text_b, e.label) for e in en] == [("A man eats.", "He is hungry.", "neutral"),
                                                          ("It rains.", "It is dry.", "contradiction")]
    assert en[1].where.endswith("xnli.dev.tsv:4")
    assert [e.label for e in read_examples("xnli", path, "fr")] == ["entailment"]
    path.write_text(XNLI_HEADER + "\n" + "en\tneutral\tonly three\n", "utf-8")
    with pytest.raises(XLMError) as e:
        read_examples("xnli", path, "en")
    one_line_error(e, "xnli.dev.tsv:2: expected at least 8 tab-separated fields, got 3")


def test_xnli_mt_train_file_and_its_label_spelling(tmp_path):
    path = tmp_path / "multinli.train.en.tsv"
    path.write_text('premise\thypo\tlabel\nConceptually cream skimming has two basic dimensions .\t'
                    'Product and geography are what make cream skimming work .\tcontradictory\n'
                    'he said , " yes "\the agreed\tentailment\n', "utf-8")  # a quote: no CSV quoting
    ex = read_examples("xnli", path, "en")
    assert [e.label for e in ex] == ["contradiction", "entailment"] and ex[1].text_a == 'he said , " yes "'


def test_pawsx_with_empty_and_broken_lines(tmp_path):
    path = tmp_path / "translated_train.tsv"
    path.write_text("id\tsentence1\tsentence2\tlabel\n1\tLe chat dort.\tLe chat dort-il ?\t0\n"
                    "2\t\tUne phrase.\t1\n3\tcut short\n", "utf-8")
    with pytest.raises(XLMError) as e:
        read_examples("pawsx", path, "fr")
    one_line_error(e, "translated_train.tsv:4: expected at least 4 tab-separated fields, got 2")
    stats = ReadStats()
    ex = read_examples("pawsx", path, "fr", skip_malformed=True, stats=stats)
    assert [e.label for e in ex] == ["0"] and (stats.malformed, stats.empty) == (1, 1)  # empty pairs dropped


def test_glue_tsv_by_header_name_and_by_index(tmp_path):
    sts = tmp_path / "dev.tsv"  # STS-B layout
    sts.write_text("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                   "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man plays.\tA man is playing.\t5.000\n",
                   "utf-8")
    ex = read_examples("tsv", sts, "en", columns={"text_a": "sentence1", "text_b": "sentence2", "label": "score"},
                       header=True)
    assert (ex[0].text_a, ex[0].text_b, ex[0].label) == ("A man plays.", "A man is playing.", "5.000")
    cola = tmp_path / "in_domain_dev.tsv"  # CoLA: no header, single sentence
    cola.write_text("gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n", "utf-8")
    ex = read_examples("tsv", cola, "en", columns={"text_a": "3", "label": "1"})
    assert ex[0].text_b is None and ex[0].label == "1"
    with pytest.raises(XLMError, match="no column 'sentence3'"):
        read_examples("tsv", sts, "en", columns={"text_a": "sentence3", "label": "score"}, header=True)
    with pytest.raises(XLMError, match="must be a 0-based column index"):
        read_examples("tsv", cola, "en", columns={"text_a": "sentence", "label": "1"})


CONLL03 = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER
"""


def test_conll2003_and_conll2002(tmp_path):
    path = tmp_path / "eng.train"
    path.write_text(CONLL03, "utf-8")
    sents = read_conll(path)
    assert [s.words for s in sents] == [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    assert sents[1].labels == ["I-PER", "I-PER"] and sents[1].where.endswith("eng.train:8")
    es = tmp_path / "esp.testa"  # CoNLL-2002: word tag, CRLF line ends
    es.write_bytes(b"Sao B-LOC\r\nPaulo I-LOC\r\n( O\r\n\r\nLa B-ORG\r\n")
    assert [s.labels for s in read_conll(es)] == [["B-LOC", "I-LOC", "O"], ["B-ORG"]]
    path.write_text(CONLL03.replace("call NN I-NP O", "call NN O"), "utf-8")
    with pytest.raises(XLMError) as e:
        read_conll(path)
    one_line_error(e, "eng.train:6: 3 fields where the file's lines have 4")
    path.write_text("Peter NNP B-NP PER\n", "utf-8")
    with pytest.raises(XLMError) as e:
        read_conll(path)
    one_line_error(e, "eng.train:1: tag 'PER' is neither O nor B-/I-/E-/S-")
    path.write_text("Peter NNP B-NP B-PER\nlonely\n", "utf-8")
    with pytest.raises(XLMError, match="eng.train:2: expected 'WORD ... TAG'"):
        read_conll(path)


CONLLU = """# sent_id = fr-ud-dev_00001
# text = Aux États-Unis.
1-2\tAux\t_\t_\t_\t_\t_\t_\t_\t_
1\tÀ\tà\tADP\t_\t_\t3\tcase\t_\t_
2\tles\tle\tDET\t_\tDefinite=Def\t3\tdet\t_\t_
3\tÉtats-Unis\tÉtats-Unis\tPROPN\tNNP\t_\t0\troot\t_\tSpaceAfter=No
3.1\tellipsis\t_\tNOUN\t_\t_\t_\t_\t_\t_
4\t.\t.\tPUNCT\t_\t_\t3\tpunct\t_\t_

"""


def test_conllu_syntactic_words_and_errors(tmp_path):
    path = tmp_path / "fr_gsd-ud-dev.conllu"
    path.write_text(CONLLU, "utf-8")
    (s,) = read_conllu(path)
    assert s.words == ["À", "les", "États-Unis", "."] and s.labels == ["ADP", "DET", "PROPN", "PUNCT"]
    assert s.where.endswith(":4")
    with pytest.raises(XLMError, match=r"dev.conllu:4: no XPOS tag"):
        read_conllu(path, "xpos")
    path.write_text(CONLLU.replace("2\tles\tle\tDET\t_", "2\tles\tle\tDET"), "utf-8")
    with pytest.raises(XLMError) as e:
        read_conllu(path)
    one_line_error(e, "dev.conllu:5: expected 10 tab-separated fields (CoNLL-U), got 9")
    path.write_text(CONLLU.replace("4\t.\t.", "5\t.\t."), "utf-8")
    with pytest.raises(XLMError, match="dev.conllu:8: ID '5' where word 4 was expected"):
        read_conllu(path)


def squad(paragraphs):
    return {"version": "1.1", "data": [{"title": "Normans", "paragraphs": paragraphs}]}


def test_squad_json_and_its_errors(tmp_path):
    path = tmp_path / "dev-context-de-question-de.json"
    ctx = "Die Normannen waren ein Volk in der Normandie."
    path.write_text(json.dumps(squad([{"context": ctx, "qas": [
        {"id": "q1", "question": "Wo?", "answers": [{"text": "in der Normandie", "answer_start": 29},
                                                     {"text": "Normandie", "answer_start": 36}]}]}]), indent=1),
                    "utf-8")
    (ex,) = read_squad(path)
    assert ex.answers == [("in der Normandie", 29), ("Normandie", 36)] and ex.answer_found(0) and ex.answer_found(1)
    path.write_text('{"version": "1.1",\n "data": [\n  {"title": "x",, }]}', "utf-8")
    with pytest.raises(XLMError) as e:
        read_squad(path)
    one_line_error(e, "question-de.json:3: invalid JSON")
    bad = squad([{"context": ctx, "qas": [{"id": "q1", "question": "Wo?", "answers": []}]},
                 {"context": ctx, "qas": [{"id": "q2", "answers": [{"text": "Volk", "answer_start": 24}]}]}])
    bad["data"][0]["paragraphs"][0]["qas"][0]["answers"] = [{"text": "Volk", "answer_start": 24}]
    path.write_text(json.dumps(bad, indent=1), "utf-8")
    text = path.read_text()
    line = text[: text.index('"id": "q2"')].count("\n")  # the line of the object holding q2 opens just above
    with pytest.raises(XLMError) as e:
        read_squad(path)
    one_line_error(e, f"question-de.json:{line}: data[0].paragraphs[1].qas[0]: missing 'question'")
    bad["data"][0]["paragraphs"][1]["qas"][0]["question"] = "Was?"
    bad["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["answer_start"] = "24"
    path.write_text(json.dumps(bad), "utf-8")
    with pytest.raises(XLMError, match=r"json:1: data\[0\].paragraphs\[1\].qas\[0\].answers\[0\]: 'answer_start' "
                                       r"should be int, got str"):
        read_squad(path)


def test_bucc_and_tatoeba(tmp_path):
    (tmp_path / "de-en.sample.de").write_text("de-000000001\tDas ist gut.\nde-000000002\tNein.\n", "utf-8")
    (tmp_path / "de-en.sample.en").write_text("en-000000001\tNo.\n", "utf-8")
    (tmp_path / "de-en.sample.gold").write_text("de-000000002\ten-000000001\n", "utf-8")
    ids, sents = read_bucc_sentences(tmp_path / "de-en.sample.de")
    assert ids == ["de-000000001", "de-000000002"] and sents[1] == "Nein."
    en_ids, _ = read_bucc_sentences(tmp_path / "de-en.sample.en")
    assert read_bucc_gold(tmp_path / "de-en.sample.gold", ids, en_ids) == {("de-000000002", "en-000000001")}
    (tmp_path / "de-en.sample.gold").write_text("de-000000002\ten-000000001\nde-000000003\ten-000000001\n", "utf-8")
    with pytest.raises(XLMError) as e:
        read_bucc_gold(tmp_path / "de-en.sample.gold", ids, en_ids)
    one_line_error(e, "de-en.sample.gold:2: id 'de-000000003' is not a sentence of the split")
    (tmp_path / "de-en.sample.de").write_text("de-000000001\tDas ist gut.\nde-000000001\tNein.\n", "utf-8")
    with pytest.raises(XLMError, match="de-en.sample.de:2: id 'de-000000001' already on line 1"):
        read_bucc_sentences(tmp_path / "de-en.sample.de")
    (tmp_path / "de-en.sample.de").write_text("de-000000001 Das ist gut.\n", "utf-8")
    with pytest.raises(XLMError, match=r"de-en.sample.de:1: expected 'ID<TAB>sentence'"):
        read_bucc_sentences(tmp_path / "de-en.sample.de")
    (tmp_path / "tatoeba.deu-eng.deu").write_text("Hallo.\nDanke.\n", "utf-8")
    (tmp_path / "tatoeba.deu-eng.eng").write_text("Hello.\n", "utf-8")
    with pytest.raises(XLMError, match="has 2 lines but .* has 1"):
        read_aligned(tmp_path / "tatoeba.deu-eng.deu", tmp_path / "tatoeba.deu-eng.eng")


def test_derived_concept_task_tags_whole_words_by_the_lexicon():
    import importlib.util

    from tests.training_data import ROOT

    spec = importlib.util.spec_from_file_location("make_concept_task", ROOT / "scripts" / "make_concept_task.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fr = ["Le", "mot", "de", "passe", "du", "fichier", "est", "invalide", ";", "erreurs"]
    assert mod.tag(fr, mod.forms("fr"), "fr") == ["O", "B-PASSWORD", "I-PASSWORD", "I-PASSWORD", "O", "B-FILE",
                                                 "O", "O", "O", "B-ERROR"]
    zh = list("无法打开文件夹中的文件")  # 文件夹 (folder) is DIR, the longer run wins over 文件 (file)
    assert mod.tag(zh, mod.forms("zh"), "zh") == ["O"] * 4 + ["B-DIR", "I-DIR", "I-DIR", "O", "O", "B-FILE", "I-FILE"]
    en = ["Close", "all", "windows", "of", "Windows", ":", "the", "file's", "Datei"]
    assert mod.tag(en, mod.forms("en"), "en") == ["O", "O", "B-WINDOW", "O", "O", "O", "O", "O", "O"]
    assert mod.tag(["Konfigurationsdatei", "Dateien"], mod.forms("de"), "de") == ["O", "B-FILE"]
