package sampleis

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Person is one synthetic resident of the population register. Every
// value is invented; none belongs to a real person.
type Person struct {
	// FIN is the 7-character personal identification code printed on the
	// identity card.
	FIN        string `xml:"fin"`
	GivenName  string `xml:"givenName"`
	Surname    string `xml:"surname"`
	Patronymic string `xml:"patronymic"`
	Gender     string `xml:"gender"`    // "M" or "F"
	BirthDate  string `xml:"birthDate"` // YYYY-MM-DD
	BirthPlace string `xml:"birthPlace"`
	Address    string `xml:"address"`
}

// PersonCount is how many persons Persons returns.
const PersonCount = 1000

var (
	maleNames = []string{"Elçin", "Rəşad", "Tural", "Orxan", "Kamran", "Vüqar", "Anar",
		"Ramil", "Elvin", "Fərid", "Nicat", "Murad", "Səbuhi", "İlkin", "Cavid", "Əli",
		"Hüseyn", "Ülvi", "Şahin", "Zaur"}
	femaleNames = []string{"Aynur", "Günel", "Leyla", "Nigar", "Səbinə", "Aysel", "Könül",
		"Nərmin", "Lalə", "Şəbnəm", "Ülviyyə", "Fidan", "Gülnar", "Sevinc", "Arzu",
		"Aygün", "Xədicə", "Zəhra", "Nuranə", "Türkan"}
	surnames = []string{"Məmmədov", "Əliyev", "Həsənov", "Hüseynov", "Quliyev",
		"İsmayılov", "Abdullayev", "Rzayev", "Nəsirov", "Cəfərov", "Babayev", "Kərimov",
		"Vəliyev", "Süleymanov", "Orucov", "Bağırov", "Qasımov", "Şükürov", "Əhmədov",
		"Xəlilov"}
	cities = []string{"Bakı", "Gəncə", "Sumqayıt", "Mingəçevir", "Şəki", "Lənkəran",
		"Naxçıvan", "Şirvan", "Quba", "Qəbələ", "Şamaxı", "Zaqatala"}
	streets = []string{"Nizami küçəsi", "Füzuli küçəsi", "Azadlıq prospekti",
		"Nəriman Nərimanov prospekti", "Üzeyir Hacıbəyov küçəsi", "Səməd Vurğun küçəsi",
		"Rəşid Behbudov küçəsi", "Xətai prospekti", "Heydər Əliyev prospekti",
		"Mirzə Fətəli Axundov küçəsi"}
)

// finAlphabet is digits and Latin capitals without I and O, which read as
// 1 and 0.
const finAlphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"

// Persons returns the register's synthetic population: PersonCount persons,
// the same on every call and every machine.
func Persons() []Person {
	r := rand.New(rand.NewPCG(118, 2014)) // decision No. 118 of 2014
	seen := map[string]bool{}
	out := make([]Person, 0, PersonCount)
	for len(out) < PersonCount {
		var fin [7]byte
		for i := range fin {
			fin[i] = finAlphabet[r.IntN(len(finAlphabet))]
		}
		if seen[string(fin[:])] {
			continue
		}
		seen[string(fin[:])] = true

		p := Person{FIN: string(fin[:]), Surname: surnames[r.IntN(len(surnames))]}
		father := maleNames[r.IntN(len(maleNames))]
		if r.IntN(2) == 0 {
			p.Gender, p.GivenName, p.Patronymic = "M",
				maleNames[r.IntN(len(maleNames))], father+" oğlu"
		} else {
			p.Gender, p.GivenName, p.Patronymic = "F",
				femaleNames[r.IntN(len(femaleNames))], father+" qızı"
			p.Surname += "a" // Məmmədov -> Məmmədova
		}
		born := time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC).
			AddDate(0, 0, r.IntN(365*65))
		p.BirthDate = born.Format(time.DateOnly)
		p.BirthPlace = cities[r.IntN(len(cities))]
		p.Address = fmt.Sprintf("%s ş., %s, ev %d, mənzil %d",
			cities[r.IntN(len(cities))], streets[r.IntN(len(streets))],
			1+r.IntN(150), 1+r.IntN(90))
		out = append(out, p)
	}
	return out
}
