from alit.cli.names import unique_names
from alit.cli.tokenize import output_names


def test_unique_names_number_repeats_and_skip_taken_ones():
    assert unique_names(["a", "b", "a", "a-2", "a"]) == ["a", "b", "a-2", "a-2-2", "a-3"]
    assert unique_names(["x", "x"], ".png") == ["x.png", "x-2.png"]
    assert unique_names([]) == []


def test_decode_names_stay_inside_the_output_folder():
    names = output_names(["../up/a.jpg", "/abs/a.jpg", "abs/a.png", "", "sub\\win.jpg"])
    assert names == {"../up/a.jpg": "up/a.png", "/abs/a.jpg": "abs/a.png", "abs/a.png": "abs/a-2.png",
                     "": "image.png", "sub\\win.jpg": "sub/win.png"}
