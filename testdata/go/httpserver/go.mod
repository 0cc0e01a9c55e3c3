module httpserver

go 1.22
