"""Data sets: preparation into one cached file and loading (`datasets`), image folders and archives
as sources (`imagefolder`), and the source names and sizes known before anything is prepared
(`sources`, torch-free for the config check)."""
