"""CrisisMMD v2.0 loader: raw TSVs + images -> prepared dataset
(fedcmi_tff/preparation/crisismmd.py)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from fedcmi_tff.data import prepared
from fedcmi_tff.preparation import crisismmd
from tests import av_fixtures
from tests import crisismmd_fixture

INFORMATIVE = crisismmd.TASK_CLASSES['informative']
HUMANITARIAN = crisismmd.TASK_CLASSES['humanitarian']
MISSING_ID = '901646074527535106_0'  # a train image
CORRUPT_ID = '901700000000000001_0'  # a test image


def _expected(info, task, agreed, split, drop=()):
  classes = crisismmd.TASK_CLASSES[task]
  pairs = [(i, classes.index(name)) for i, name in info['labels'][(task, agreed)][split]
           if i not in drop]
  return [i for i, _ in pairs], [label for _, label in pairs]


def _stored_example(output_dir, split, example_id):
  path = prepared.example_path(output_dir, split, example_id)
  record = next(iter(tf.data.TFRecordDataset([path]))).numpy()
  return tf.train.Example.FromString(record).features.feature


def _stored_token_ids(output_dir, split, example_id):
  return list(_stored_example(output_dir, split, example_id)['text'].int64_list.value)


@pytest.fixture(scope='module')
def base(tmp_path_factory):
  """The informative 'all' task prepared from a fixture with one missing and one corrupt image."""
  root = tmp_path_factory.mktemp('crisismmd')
  info = crisismmd_fixture.make_crisismmd(str(root / 'raw'), missing_images=(MISSING_ID,),
                                          corrupt_images=(CORRUPT_ID,))
  output_dir = str(root / 'prepared')
  manifest = crisismmd.prepare_crisismmd(info['root'], output_dir)
  return info, output_dir, manifest


def test_task_classes_put_informative_at_index_one():
  assert INFORMATIVE == ('not_informative', 'informative')
  assert len(HUMANITARIAN) == 8
  assert list(HUMANITARIAN) == sorted(HUMANITARIAN)
  assert HUMANITARIAN[0] == 'affected_individuals' and HUMANITARIAN[-1] == 'vehicle_damage'


def test_split_sizes_and_labels_of_the_informative_task(base):
  info, _, manifest = base
  assert manifest['dataset'] == 'crisismmd'
  assert manifest['class_names'] == list(INFORMATIVE)
  train_ids, train_labels = _expected(info, 'informative', False, 'train', drop=(MISSING_ID,))
  test_ids, test_labels = _expected(info, 'informative', False, 'test', drop=(CORRUPT_ID,))
  assert manifest['splits']['train']['example_ids'] == train_ids
  assert manifest['splits']['train']['labels'] == train_labels
  assert manifest['splits']['test']['example_ids'] == test_ids
  assert manifest['splits']['test']['labels'] == test_labels
  # The fixture's first row is 'informative' -> 1; 'Just had lunch' is not_informative -> 0.
  assert train_labels[0] == 1 and train_labels[-1] == 0
  # Two images of one tweet are two examples.
  assert {'917791291823591425_0', '917791291823591425_1'} <= set(train_ids)
  report = manifest['report']
  assert report['read'] == {'train': 6, 'dev': 2, 'test': 4}
  assert report['written'] == {'train': 5, 'test': 3}
  assert any('dev split' in note and 'not written' in note for note in report['notes'])
  recipe = manifest['recipe']
  assert (recipe['task'], recipe['agreed'], recipe['label_column']) == ('informative', False,
                                                                       'label')
  assert (recipe['image_size'], recipe['crop_size']) == (228, 224)
  assert (recipe['max_length'], recipe['max_tokens']) == (40, 20000)
  assert [m['name'] for m in manifest['modalities']] == ['image', 'text']


def test_missing_and_corrupt_images_are_counted_and_named(base):
  info, _, manifest = base
  report = manifest['report']
  assert report['skipped'] == {'image file missing': 1, 'image undecodable': 1}
  assert report['skipped_examples']['image file missing'] == [info['image_paths'][MISSING_ID]]
  assert report['skipped_examples']['image undecodable'] == [info['image_paths'][CORRUPT_ID]]
  assert MISSING_ID not in manifest['splits']['train']['example_ids']
  assert CORRUPT_ID not in manifest['splits']['test']['example_ids']


def test_humanitarian_task(tmp_path):
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'))
  manifest = crisismmd.prepare_crisismmd(info['root'], str(tmp_path / 'out'),
                                         task='humanitarian')
  assert manifest['class_names'] == list(HUMANITARIAN)
  for split in ('train', 'test'):
    ids, labels = _expected(info, 'humanitarian', False, split)
    assert manifest['splits'][split]['example_ids'] == ids
    assert manifest['splits'][split]['labels'] == labels
  assert manifest['splits']['test']['labels'][-1] == HUMANITARIAN.index('injured_or_dead_people')


def test_agreed_label_files(tmp_path):
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'), agreed=True)
  path = crisismmd.find_split_file(info['root'], 'informative', 'train', agreed=True)
  assert path == info['files'][('informative', 'train', True)]
  assert 'crisismmd_datasplit_agreed_label' in path and path.endswith('_agreed_lab_train.tsv')
  all_path = crisismmd.find_split_file(info['root'], 'informative', 'train', agreed=False)
  assert all_path == info['files'][('informative', 'train', False)]
  manifest = crisismmd.prepare_crisismmd(info['root'], str(tmp_path / 'out'), agreed=True)
  for split, size in (('train', 4), ('test', 3)):
    ids, labels = _expected(info, 'informative', True, split)
    assert manifest['splits'][split]['count'] == size
    assert manifest['splits'][split]['example_ids'] == ids
    assert manifest['splits'][split]['labels'] == labels
  # The image label of 917791291823591425_1 disagrees with its text label.
  assert '917791291823591425_1' not in manifest['splits']['train']['example_ids']
  assert manifest['recipe']['agreed'] is True


def test_nested_split_folder_is_found_and_absent_files_list_the_places_searched(tmp_path):
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'), nested=True)
  for split in ('train', 'dev', 'test'):
    path = crisismmd.find_split_file(info['root'], 'humanitarian', split, agreed=False)
    assert path == info['files'][('humanitarian', split, False)]
    assert os.path.join('crisismmd_datasplit_all', 'crisismmd_datasplit_all') in path
  with pytest.raises(prepared.DataFormatError) as error:
    crisismmd.find_split_file(info['root'], 'informative', 'train', agreed=True)
  message = str(error.value)
  assert 'task_informative_text_img_agreed_lab_train.tsv' in message
  assert os.path.join(info['root'], 'crisismmd_datasplit_agreed_label') in message
  assert info['split_dir'] in message


@pytest.mark.parametrize('raw, cleaned', [
    (crisismmd_fixture.TRICKY_TEXT, crisismmd_fixture.TRICKY_TEXT_CLEANED),
    ('  RT   hello   world ', 'hello world'),
    ('RTs are not retweets', 'RTs are not retweets'),
    ('not RT here #tag ##two', 'not RT here tag two'),
    ('see http://a.b/c and HTTPS://x.y?q=1 or www.site.org/page now', 'see and or now'),
    ('tabs\tand\nnewlines', 'tabs and newlines'),
])
def test_clean_tweet(raw, cleaned):
  assert crisismmd.clean_tweet(raw) == cleaned


def test_read_split_keeps_quotes_commas_and_emoji_and_numbers_lines(base):
  info, _, _ = base
  rows = crisismmd.read_split(info['files'][('informative', 'train', False)], INFORMATIVE)
  assert [r.line for r in rows] == [2, 3, 4, 5, 6, 7]
  assert rows[0].tweet_text == crisismmd_fixture.TRICKY_TEXT
  assert rows[2].tweet_text.startswith('"Houston" flood water rising fast,')
  assert rows[0].image == 'data_image/california_wildfires/10_10_2017/917791291823591425_0.jpg'
  assert (rows[1].tweet_id, rows[1].image_id) == ('917791291823591425', '917791291823591425_1')
  assert [r.label_index for r in rows] == [1, 1, 1, 0, 1, 0]
  by_image = crisismmd.read_split(info['files'][('informative', 'train', False)], INFORMATIVE,
                                  label_column='label_image')
  assert [r.label_name for r in by_image][1] == 'not_informative'


def test_build_vocabulary_is_ordered_by_count_then_token_and_capped():
  vocabulary = crisismmd.build_vocabulary(['b a', 'a c', 'A!'], max_tokens=4)
  assert vocabulary == ['', '[UNK]', 'a', 'c']


def test_token_ids_of_known_sentences(base):
  _, output_dir, manifest = base
  vocabulary = manifest['vocabulary']
  assert vocabulary[:2] == ['', '[UNK]']
  # Adapted on the train tweets only: test-only words are out of vocabulary.
  assert 'water' in vocabulary and 'friends' not in vocabulary and 'hospital' not in vocabulary
  # Built from the cleaned tweets: no 'RT', URL or '#' residue.
  assert 'californiafires' in vocabulary and 'rt' not in vocabulary
  assert not [t for t in vocabulary if t.startswith(('http', 'www'))]
  words = ['water', 'rising', 'fast', 'in', 'santa', 'rosa']
  expected = [vocabulary.index(w) for w in words] + [0] * 34
  assert _stored_token_ids(output_dir, 'test', '917900000000000001_0') == expected
  assert min(expected[:6]) >= 2
  # 'Lunch with friends': 'lunch' is a train word, the others map to OOV = 1.
  lunch = _stored_token_ids(output_dir, 'train', '869541213366898688_0')
  assert lunch[:3] == [vocabulary.index('just'), vocabulary.index('had'), vocabulary.index('lunch')]
  vectorizer = crisismmd.make_text_vectorizer(vocabulary, max_length=3)
  ids = crisismmd.token_ids(vectorizer, ['Lunch with friends', 'water rising fast in santa rosa'])
  np.testing.assert_array_equal(ids, [[vocabulary.index('lunch'), 1, 1], expected[:3]])
  assert manifest['text']['padding_id'] == 0 and manifest['text']['oov_id'] == 1


def test_vocabulary_file_replaces_the_adapted_vocabulary(tmp_path):
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'))
  vocabulary_file = tmp_path / 'vocab.txt'
  vocabulary_file.write_text('water\nfast\n')
  output_dir = str(tmp_path / 'out')
  manifest = crisismmd.prepare_crisismmd(info['root'], output_dir, max_length=8,
                                         vocabulary_file=str(vocabulary_file))
  assert manifest['vocabulary'] == ['', '[UNK]', 'water', 'fast']
  assert _stored_token_ids(output_dir, 'test', '917900000000000001_0') == [2, 1, 3, 1, 1, 1, 0, 0]
  assert manifest['recipe']['max_tokens'] is None
  assert len(manifest['recipe']['vocabulary']['file_sha256']) == 64
  vocabulary_file.write_text('water\n\nfast\n')
  with pytest.raises(prepared.DataFormatError, match='line 2: empty token'):
    crisismmd.read_vocabulary_file(str(vocabulary_file))


def test_images_are_stored_as_black_padded_228_jpegs(base):
  _, output_dir, _ = base
  wide = crisismmd_fixture.WIDE_IMAGE_ID  # stored 32 wide, 20 high
  jpeg = _stored_example(output_dir, 'train', wide)['image'].bytes_list.value[0]
  assert jpeg[:2] == b'\xff\xd8'
  image = tf.io.decode_jpeg(jpeg).numpy().astype(int)
  assert image.shape == (228, 228, 3)
  # (32 - 20) / 2 = 6 padding rows of 32 -> about 43 black rows above and below.
  assert image[:35].max() < 20 and image[-35:].max() < 20
  assert image[60:170].min() > 100
  assert image[114, :].min() > 100  # no padding at the sides
  square = _stored_example(output_dir, 'train', '917791291823591425_0')['image']
  assert tf.io.decode_jpeg(square.bytes_list.value[0]).shape == (228, 228, 3)


def test_load_prepared_gives_model_inputs(base):
  _, output_dir, manifest = base
  splits = prepared.load_prepared(output_dir, 'crisismmd', prepared.LoadOptions(image_size=32))
  assert splits.modality_names == ('image', 'text')
  assert splits.class_names == INFORMATIVE
  assert splits.train.input_shapes == {'image': (32, 32, 3), 'text': (40,)}
  assert splits.train.vocabulary_sizes == {'text': len(manifest['vocabulary'])}
  examples = list(splits.train.examples([0, 1], ('image', 'text')))
  assert len(examples) == 2
  for example, label in zip(examples, manifest['splits']['train']['labels'][:2]):
    assert example['image'].shape == (32, 32, 3) and example['image'].dtype == tf.float32
    assert example['text'].shape == (40,) and example['text'].dtype == tf.float32
    assert int(example['label']) == label
    assert float(tf.reduce_min(example['image'])) >= -1.0
    assert float(tf.reduce_max(example['image'])) <= 1.0


def test_duplicate_image_id_is_skipped_and_counted(tmp_path):
  first = crisismmd_fixture.ROWS[0]
  info = crisismmd_fixture.make_crisismmd(
      str(tmp_path / 'raw'),
      extra_rows=[('train', crisismmd_fixture.row_fields(first, 'informative'))])
  manifest = crisismmd.prepare_crisismmd(info['root'], str(tmp_path / 'out'))
  assert manifest['report']['skipped'] == {'duplicate image_id': 1}
  named = manifest['report']['skipped_examples']['duplicate image_id'][0]
  assert f':{info["extra_lines"]["train"][0]} {first.image_id}' in named
  assert manifest['splits']['train']['count'] == 6
  assert manifest['report']['read']['train'] == 7


def _expect_format_error(info, tmp_path, *fragments):
  with pytest.raises(prepared.DataFormatError) as error:
    crisismmd.prepare_crisismmd(info['root'], str(tmp_path / 'out'))
  for fragment in fragments:
    assert fragment in str(error.value)
  assert not os.path.exists(tmp_path / 'out' / prepared.MANIFEST_NAME)


def test_malformed_row_names_file_and_line(tmp_path):
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'),
                                          extra_rows=[('test', 'a\tb\tc')])
  line = info['extra_lines']['test'][0]
  assert line == 6
  _expect_format_error(info, tmp_path, info['files'][('informative', 'test', False)],
                       f'line {line}:', '3 tab-separated fields, expected 9')


def test_unknown_label_names_label_and_line(tmp_path):
  fields = crisismmd_fixture.row_fields(crisismmd_fixture.ROWS[3], 'informative')
  fields[2] = '901646074527535106_7'
  fields[5] = 'maybe_informative'
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'), extra_rows=[('dev', fields)])
  _expect_format_error(info, tmp_path, info['files'][('informative', 'dev', False)], 'line 4:',
                       "'maybe_informative'")


def test_missing_header_column_and_empty_file(tmp_path):
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'))
  path = info['files'][('informative', 'train', False)]
  with open(path, encoding='utf-8') as f:
    text = f.read()
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text.replace('\tlabel_image\t', '\tlabel_img\t', 1))
  _expect_format_error(info, tmp_path, path, 'line 1', 'label_image')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('')
  _expect_format_error(info, tmp_path, path, 'empty file')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\t'.join(crisismmd_fixture.HEADER) + '\n')
  _expect_format_error(info, tmp_path, path, 'no data rows')


def _file_times(output_dir):
  return {name: os.stat(os.path.join(folder, name)).st_mtime_ns
          for folder, _, names in os.walk(output_dir) for name in names}


def test_rerun_is_a_no_op_and_a_different_recipe_is_refused(tmp_path):
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'))
  output_dir = str(tmp_path / 'out')
  manifest = crisismmd.prepare_crisismmd(info['root'], output_dir)
  before = _file_times(output_dir)
  assert not any(name.startswith('.') for name in before)

  def fail_if_iterated(items, total, desc):
    raise AssertionError(f'rerun started working on {desc}')

  assert crisismmd.prepare_crisismmd(info['root'], output_dir,
                                     progress=fail_if_iterated) == manifest
  assert _file_times(output_dir) == before
  with pytest.raises(prepared.DataFormatError, match='recipe.max_length 40 .prepared. vs 20'):
    crisismmd.prepare_crisismmd(info['root'], output_dir, max_length=20)
  with pytest.raises(prepared.DataFormatError,
                     match='recipe.task informative .prepared. vs humanitarian .now.'):
    crisismmd.prepare_crisismmd(info['root'], output_dir, task='humanitarian')
  assert _file_times(output_dir) == before


class _Interrupted(Exception):
  pass


def _stop_after_three(items, total, desc):
  """A progress wrapper that interrupts the preparation after three items."""
  del total, desc
  for index, item in enumerate(items):
    if index == 3:
      raise _Interrupted()
    yield item


def test_interrupted_preparation_resumes_and_refuses_another_recipe(tmp_path):
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'))
  output_dir = str(tmp_path / 'out')

  with pytest.raises(_Interrupted):
    crisismmd.prepare_crisismmd(info['root'], output_dir, progress=_stop_after_three)
  assert not os.path.exists(os.path.join(output_dir, prepared.MANIFEST_NAME))
  assert len(os.listdir(os.path.join(output_dir, 'train'))) == 3
  with pytest.raises(prepared.DataFormatError, match='unfinished preparation'):
    crisismmd.prepare_crisismmd(info['root'], output_dir, max_length=20)
  manifest = crisismmd.prepare_crisismmd(info['root'], output_dir)
  assert any(note.startswith('resumed: 3 ') for note in manifest['report']['notes'])
  ids, labels = _expected(info, 'informative', False, 'train')
  assert manifest['splits']['train']['example_ids'] == ids
  assert manifest['splits']['train']['labels'] == labels
  assert manifest['report']['written'] == {'train': 6, 'test': 4}
  with open(os.path.join(output_dir, prepared.MANIFEST_NAME)) as f:
    assert json.load(f) == manifest
  assert not [n for n in os.listdir(output_dir) if n.startswith('.')]


# -- re-runs trust nothing on disk


def _replace_in(path, old, new):
  with open(path, encoding='utf-8') as f:
    text = f.read()
  assert old in text
  with open(path, 'w', encoding='utf-8', newline='') as f:
    f.write(text.replace(old, new))


def test_changed_train_tsv_after_an_interruption_is_refused_then_overwritten(tmp_path):
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'))
  output_dir = str(tmp_path / 'out')

  with pytest.raises(_Interrupted):
    crisismmd.prepare_crisismmd(info['root'], output_dir, progress=_stop_after_three)
  train_tsv = info['files'][('informative', 'train', False)]
  # A new train word changes the vocabulary, so the token ids of every stored example.
  _replace_in(train_tsv, 'Just had lunch', 'Just had breakfast')
  with pytest.raises(prepared.DataFormatError) as error:
    crisismmd.prepare_crisismmd(info['root'], output_dir)
  message = str(error.value)
  assert 'unfinished preparation' in message and os.path.basename(train_tsv) in message
  assert '--overwrite' in message and 'choose another output folder' in message
  assert len(os.listdir(os.path.join(output_dir, 'train'))) == 3  # nothing deleted
  manifest = crisismmd.prepare_crisismmd(info['root'], output_dir, overwrite=True)
  assert not any(n.startswith('resumed') for n in manifest['report']['notes'])
  vocabulary = manifest['vocabulary']
  assert 'breakfast' in vocabulary and 'lunch' not in vocabulary
  assert _stored_token_ids(output_dir, 'train', '869541213366898688_0')[:3] == [
      vocabulary.index('just'), vocabulary.index('had'), vocabulary.index('breakfast')]
  assert manifest['recipe']['vocabulary_sha256'] == crisismmd.vocabulary_sha256(vocabulary)
  rel = os.path.relpath(train_tsv, info['root'])
  assert manifest['inputs']['files'][rel]['size'] == os.path.getsize(train_tsv)
  assert manifest['inputs']['raw_dir'] == os.path.realpath(info['root'])


def test_another_raw_dir_or_changed_tsv_into_a_finished_folder_is_refused(tmp_path):
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'))
  other = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw2'))
  output_dir = str(tmp_path / 'out')
  crisismmd.prepare_crisismmd(info['root'], output_dir)
  before = _file_times(output_dir)
  with pytest.raises(prepared.DataFormatError) as error:
    crisismmd.prepare_crisismmd(other['root'], output_dir)
  message = str(error.value)
  assert 'a finished preparation of other inputs' in message and 'raw folder' in message
  assert other['root'] in message and '--overwrite' in message
  _replace_in(info['files'][('informative', 'test', False)], 'Lunch with', 'Dinner with')
  with pytest.raises(prepared.DataFormatError, match='task_informative_text_img_test.tsv'):
    crisismmd.prepare_crisismmd(info['root'], output_dir)
  assert _file_times(output_dir) == before
  manifest = crisismmd.prepare_crisismmd(other['root'], output_dir, overwrite=True)
  assert manifest['source'] == os.path.abspath(other['root'])


def test_deleted_or_damaged_example_files_are_made_again_on_rerun(tmp_path):
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'))
  output_dir = str(tmp_path / 'out')
  first = crisismmd.prepare_crisismmd(info['root'], output_dir)
  train_ids = first['splits']['train']['example_ids']
  for example_id in train_ids[::2]:
    os.unlink(prepared.example_path(output_dir, 'train', example_id))
  with open(prepared.example_path(output_dir, 'test', first['splits']['test']['example_ids'][0]),
            'r+b') as f:
    f.truncate(5)
  built = []

  def count(items, total, desc):
    del total, desc
    for item, result in items:
      built.append(item[1]) if result[0] is not None else None
      yield item, result

  again = crisismmd.prepare_crisismmd(info['root'], output_dir, progress=count)
  assert sorted(built) == sorted(train_ids[::2] + [first['splits']['test']['example_ids'][0]])
  assert again['splits'] == first['splits']
  note = [n for n in again['report']['notes'] if n.startswith('made again: 4 example files')]
  assert note and '(missing)' in note[0]
  assert '(5 bytes, but the preparation journal records' in note[0]
  assert len(prepared.load_prepared(output_dir, 'crisismmd').train) == len(train_ids)


# -- raw input faults


def test_non_utf8_tsv_names_file_and_line(tmp_path):
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'))
  path = info['files'][('informative', 'train', False)]
  with open(path, 'rb') as f:
    lines = f.read().split(b'\n')
  lines[3] = lines[3].replace(b'rising', b'ris\xe9ing')
  with open(path, 'wb') as f:
    f.write(b'\n'.join(lines))
  _expect_format_error(info, tmp_path, f'{path}:4: not UTF-8 text (byte 0xe9 at byte column')
  vocabulary_file = tmp_path / 'vocab.txt'
  vocabulary_file.write_bytes(b'water\n\xff\xfe\n')
  with pytest.raises(prepared.DataFormatError, match=r'vocab\.txt:2: not UTF-8 text \(byte 0xff'):
    crisismmd.read_vocabulary_file(str(vocabulary_file))


def test_fifo_folder_and_long_image_paths_are_skipped_with_a_reason(tmp_path):
  fifo_id, folder_id = MISSING_ID, CORRUPT_ID
  long_row = crisismmd_fixture.row_fields(crisismmd_fixture.ROWS[0], 'informative')
  long_row[2] = '917791291823591425_7'
  long_row[4] = 'data_image/' + 'x' * 100_000 + '.jpg'  # a 100 kB field
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'),
                                          missing_images=(fifo_id, folder_id),
                                          extra_rows=[('train', long_row)])
  av_fixtures.make_fifo(info['image_paths'][fifo_id])  # a FIFO named .jpg: refused, not read
  os.makedirs(info['image_paths'][folder_id])  # a folder named .jpg
  output_dir = str(tmp_path / 'out')
  manifest = crisismmd.prepare_crisismmd(info['root'], output_dir)
  report = manifest['report']
  assert report['skipped'] == {'image file unreadable': 2, 'image file missing': 1}
  unreadable = ' '.join(report['skipped_examples']['image file unreadable'])
  assert info['image_paths'][fifo_id] in unreadable and 'a FIFO (named pipe)' in unreadable
  assert info['image_paths'][folder_id] in unreadable and 'a folder' in unreadable
  (long_item,) = report['skipped_examples']['image file missing']
  assert len(long_item) < 500 and long_item.endswith(' bytes)') and '…' in long_item
  with open(os.path.join(output_dir, prepared.MANIFEST_NAME), 'rb') as f:
    assert len(f.read()) < 50_000  # the 100 kB field is not stored


def test_long_raw_fields_are_cut_in_messages(tmp_path):
  fields = crisismmd_fixture.row_fields(crisismmd_fixture.ROWS[3], 'informative')
  fields[2] = '901646074527535106_7'
  fields[5] = 'y' * 100_000
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'), extra_rows=[('dev', fields)])
  with pytest.raises(prepared.DataFormatError) as error:
    crisismmd.prepare_crisismmd(info['root'], str(tmp_path / 'out'))
  message = str(error.value)
  assert 'unknown label' in message and "… (100000 bytes)" in message and len(message) < 600
  fields[5], fields[2] = 'informative', '9' * 300 + '_0'
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw2'), extra_rows=[('test', fields)])
  with pytest.raises(prepared.DataFormatError, match='line 6: example id .* longer than 200 bytes'):
    crisismmd.prepare_crisismmd(info['root'], str(tmp_path / 'out2'))


def test_no_train_example_carries_the_skip_report(tmp_path):
  ids = [r.image_id for r in crisismmd_fixture.ROWS]
  info = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'), missing_images=ids)
  with pytest.raises(prepared.DataFormatError) as error:
    crisismmd.prepare_crisismmd(info['root'], str(tmp_path / 'out'))
  message = str(error.value)
  assert 'no train example was prepared (6 train rows read; skipped 10 x image file missing)' in (
      message)
  lines = error.value.report.lines()
  assert 'skipped: 10' in lines and any(l.startswith('  10 x image file missing: ') for l in lines)
