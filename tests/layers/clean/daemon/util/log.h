/* fixture: a leaf */
