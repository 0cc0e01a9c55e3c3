module nativepause

go 1.22
