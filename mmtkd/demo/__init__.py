"""The demo behind ``tools/demo.py``: build the data, train and cache the teachers, distil and
evaluate the students, print the table, plot the weights."""
